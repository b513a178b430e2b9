"""`omnilab gc`: what dead owners left is removed; kept and live stacks are not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from omnilab import Redis, Stack
from omnilab.progress import QuietReporter
from tests.support import run_cli, stack_processes, wait_until
from tests.support.docker_support import REDIS_IMAGE, TEST_LABEL, docker_client

pytestmark = pytest.mark.usefixtures("docker_scope")

HOLD = """
import sys, time, omnilab
from omnilab import Redis
with omnilab.stack(Redis(), runtime=sys.argv[1]) as s:
    print(s.id, flush=True)
    time.sleep(300)
"""


def _orphan_a_stack(runtime: str = "docker") -> str:
    """A stack whose owner and watcher were both killed outright: the state file and the
    containers stay, as after a power cut."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, runtime], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    stack_id = proc.stdout.readline().strip()
    assert stack_id, "the stack did not start"
    watchers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "omnilab.reaper" in " ".join(p.info["cmdline"] or [])
        and stack_id in " ".join(p.info["cmdline"] or [])
    ]
    assert len(watchers) == 1
    watchers[0].kill()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return stack_id


def _older_version_leftover(scope: str) -> str:
    """A container labelled by an omnilab that recorded no owner."""
    container = docker_client().containers.create(
        REDIS_IMAGE,
        name=f"redis-exp-old{scope[:5]}",
        labels={"io.omnilab.managed": "true", TEST_LABEL: scope},
    )
    return container.name


def test_gc_removes_what_dead_owners_left_and_nothing_else(
    workdir: Path, docker_scope: str
) -> None:
    orphan = _orphan_a_stack()
    old = _older_version_leftover(docker_scope)
    kept = run_cli("stack", "up", "redis", "--runtime", "docker")
    assert kept.returncode == 0, kept.stderr
    kept_id = next(
        line.split()[1] for line in kept.stderr.splitlines() if line.startswith("stack ")
    )
    with Stack(Redis(), runtime="docker", reporter=QuietReporter()) as live:
        dry = run_cli("gc", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        listed = json.loads(dry.stdout)["leftovers"]
        names = {(item["kind"], item["name"]) for item in listed}
        assert ("container", old) in names
        assert any(kind == "stack" and name.startswith(orphan[:12]) for kind, name in names)
        assert not any(item["removed"] for item in listed)
        for stack_id in (kept_id, live.id):
            assert not any((item["stack"] or "").startswith(stack_id) for item in listed)
        assert docker_client().containers.get(old)  # dry run: still there

        removed = run_cli("gc")
        assert removed.returncode == 0, removed.stderr
        assert f"removed container {old}" in removed.stdout
        assert "owner is gone" in removed.stdout
        client = docker_client()
        for stack_id in (orphan,):
            selector = {"label": [f"io.omnilab.stack={stack_id}"]}
            assert not client.containers.list(all=True, filters=selector, sparse=True)
            assert not client.networks.list(filters=selector)
            assert not client.volumes.list(filters=selector)
        assert not (workdir / "state" / "stacks" / f"{orphan}.json").exists()
        # The kept stack and the live one are untouched.
        assert live.redis.ping()
        running = {
            c.attrs["Labels"]["io.omnilab.stack"]
            for c in client.containers.list(filters={"label": "io.omnilab.stack"}, sparse=True)
        }
        for stack_id in (kept_id, live.id):
            assert any(s.startswith(stack_id) for s in running)

        again = run_cli("gc")
        assert again.returncode == 0 and "nothing to remove" in again.stderr
    assert run_cli("stack", "down", kept_id).returncode == 0


def test_gc_only_looks_at_objects_of_its_own_labels(docker_scope: str) -> None:
    """With OMNILAB_LABELS set (as in CI jobs and these tests), gc never sees anyone
    else's objects, even abandoned ones."""
    old = _older_version_leftover(docker_scope)
    try:
        other = run_cli("gc", "--dry-run", "--json", env={"OMNILAB_LABELS": f"{TEST_LABEL}=x"})
        assert old not in other.stdout
        mine = run_cli("gc", "--dry-run", "--json")
        assert old in mine.stdout
    finally:
        docker_client().containers.get(old).remove(force=True)


def test_gc_without_an_engine_still_cleans_abandoned_local_stacks(workdir: Path) -> None:
    orphan = _orphan_a_stack("local")
    assert (workdir / "state" / "stacks" / f"{orphan}.json").exists()
    assert stack_processes(), "the orphan's Redis is still running"
    result = run_cli("gc", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 0, result.stderr
    assert "docker objects not checked: no Docker engine answers" in result.stderr
    assert f"removed stack {orphan[:12]} (local)" in result.stdout
    assert not (workdir / "state" / "stacks" / f"{orphan}.json").exists()
    assert wait_until(lambda: not stack_processes(), timeout=10)
