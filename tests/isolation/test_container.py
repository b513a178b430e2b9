"""``isolation = "container"`` against the real engine: the experiment's code runs in the
experiments image (built by `omnilab images build experiments`), on its run's network,
and the run records what a host run records."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import EXPERIMENTS, HELLO, OMNILAB, ROOT, run_cli, wait_until
from tests.support.docker_support import TEST_LABEL, docker_client

pytestmark = pytest.mark.usefixtures("docker_scope", "experiments_image")

RECORDED = EXPERIMENTS / "recorded.py"


@pytest.fixture(scope="session")
def experiments_image(docker_images: list[str]) -> str:
    from omnilab.progress import Reporter
    from omnilab.runtimes.docker.images import build

    return build(["experiments"], Reporter(sys.stderr))[-1].spec.tag


def _run(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = run_cli("run", *args, "--runtime", "docker", "--json")
    # The experiment's own prints come first on stdout, then the run as JSON.
    start = result.stdout.find("{\n")
    return result, json.loads(result.stdout[start:]) if start >= 0 else {}


def _metrics(run: dict) -> dict[str, tuple]:
    """Per metric: (count, last step, last, min, max), as the run's JSON sums them up."""
    return {
        k: (v["count"], v["last_step"], v["last"], v["min"], v["max"])
        for k, v in run["metrics"].items()
    }


def _artifacts(run: dict) -> list[tuple]:
    return [(a["path"], a["size"], a["sha256"]) for a in run["artifacts"]]


def test_a_container_run_records_what_a_host_run_records(workdir: Path) -> None:
    host, host_run = _run(RECORDED, "-p", "n=4", "--isolation", "host")
    assert host.returncode == 0, host.stderr
    inside, inside_run = _run(RECORDED, "-p", "n=4", "--isolation", "container")
    assert inside.returncode == 0, inside.stderr

    assert inside_run["status"] == host_run["status"] == "succeeded"
    assert inside_run["environment"]["isolation"]["kind"] == "container"
    assert host_run["environment"]["isolation"] == {"kind": "host"}
    # Same summary, but for where the code ran: inside, OmniMind's docker_experiments.
    assert host_run["summary"].pop("environment") == "unset"
    assert inside_run["summary"].pop("environment") == "docker_experiments"
    assert inside_run["summary"] == host_run["summary"] == {"keys": 4, "rows": 4}
    assert inside_run["params"] == host_run["params"] == {"n": 4}
    assert _metrics(inside_run) == _metrics(host_run)
    assert _metrics(inside_run) == {"written": (4, 3, 4.0, 1.0, 4.0), "loss": (1, 7, 0.5, 0.5, 0.5)}
    assert _artifacts(inside_run) == _artifacts(host_run)
    assert [a[:2] for a in _artifacts(inside_run)] == [("out.txt", 2)]
    # Its output reaches the terminal and the run's log, stdout and stderr alike.
    log = (Path(inside_run["run_dir"]) / "logs" / "output.log").read_text()
    assert "wrote 4 keys" in log and "to stderr" in log
    assert "wrote 4 keys" in inside.stdout + inside.stderr
    # The artifacts the container wrote are the host user's.
    artifact = Path(inside_run["run_dir"]) / "artifacts" / "out.txt"
    assert artifact.stat().st_uid == os.getuid()
    # No secret in the run's record.
    assert "password" not in json.dumps(inside_run).lower()


def test_the_container_is_unprivileged_on_the_run_network_with_the_seed_names(
    workdir: Path,
) -> None:
    from omnilab import Postgres, Redis, Resources, Stack
    from omnilab.isolation.container import ContainerIsolation

    bounded = Resources(per_service={"experiment": Resources(memory="1g", pids=128)})
    stack = Stack(Redis(), Postgres(), runtime="docker", resources=bounded)
    stack.prepare()
    isolated = ContainerIsolation.prepare(stack, RECORDED, "Recorded", {"n": 1}, workdir / "r")
    try:
        stack.start(on_open=lambda state: isolated.launch(stack, state))
        isolated._launching.join()
        container = docker_client().containers.get(isolated.container.id)
        host_config = container.attrs["HostConfig"]
        assert not host_config["Privileged"]
        assert "no-new-privileges" in host_config["SecurityOpt"]
        assert host_config["CapDrop"] == ["ALL"]
        # Bounded like the services' containers: memory (no swap on top), processes, /tmp.
        assert (host_config["Memory"], host_config["MemorySwap"]) == (1 << 30, 1 << 30)
        assert host_config["PidsLimit"] == 128
        tmp_size = min(1 << 30, docker_client().info()["MemTotal"] // 4)
        assert host_config["Tmpfs"]["/tmp"].endswith(f",size={tmp_size}")
        assert isolated.describe()["bounds"]["memory"] == "1 GiB"
        assert container.attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        assert container.labels["io.omnilab.stack"] == stack.id
        assert container.labels["io.omnilab.service"] == "experiment"
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [f"omnilab-{stack.id[:12]}"]
        env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
        assert env["ENVIRONMENT"] == "docker_experiments"
        # Secrets come on stdin, never in the container's configuration.
        assert not any("PASSWORD" in k or "URL" in k for k in env)
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert mounts["/omnilab/experiment"]["RW"] is False
        assert mounts["/omnilab/run/artifacts"]["RW"] is True
        # What the code inside gets: OmniMind's host names and the services' own ports.
        message = json.loads(isolated._start_message(stack))
        assert message["env"]["REDIS_URL"].endswith("@redis-exp:6379/0")
        assert "@postgres-exp:5432/" in message["env"]["POSTGRES_URL"]
    finally:
        isolated.remove()
        stack.close()


def test_a_failing_experiment_fails_the_run_with_its_traceback(workdir: Path) -> None:
    result, run = _run(EXPERIMENTS / "boom.py", "--isolation", "container")
    assert result.returncode == 1
    assert run["status"] == "failed"
    assert "ZeroDivisionError" in run["error"] and "divide" in run["error"]
    # The traceback names the user's file, not the folder it is mounted on.
    assert f'"{EXPERIMENTS / "boom.py"}"' in run["error"]
    assert "/omnilab/experiment/" not in run["error"]
    assert _metrics(run) == {"reached": (1, 0, 1.0, 1.0, 1.0)}


def test_container_isolation_with_the_local_runtime_is_a_usage_error(workdir: Path) -> None:
    result = run_cli("run", RECORDED, "--runtime", "local", "--isolation", "container")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "needs the docker runtime" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "runs").exists()
    bad = run_cli("run", RECORDED, "--isolation", "vm")
    assert bad.returncode == 2 and "vm" in bad.stderr


def test_hello_runs_in_a_container_with_qdrant_on_the_run_network(workdir: Path) -> None:
    """The README's first experiment, in the experiments container: its ctx.qdrant is a
    client of the run's Qdrant container, reached as OmniMind's qdrant-exp."""
    result, run = _run(HELLO, "-p", "n_items=30", "--isolation", "container")
    assert result.returncode == 0, result.stderr
    assert run["environment"]["isolation"]["kind"] == "container"
    assert run["summary"]["qdrant_points"] == run["summary"]["redis_keys"] == 30
    assert run["summary"]["nearest_is_self"] is True
    assert run["stack"]["services"]["qdrant"]["image"] == "omnilab/qdrant:1.19.0-bookworm"


def test_a_missing_experiments_image_names_the_build_command(workdir: Path) -> None:
    env = {"OMNILAB_IMAGE_EXPERIMENTS": "omnilab/experiments:no-such-tag"}
    result = run_cli("run", RECORDED, "--runtime", "docker", "--isolation", "container", env=env)
    assert result.returncode == 2
    assert "`omnilab images build experiments`" in result.stderr
    env = {"OMNILAB_IMAGE_EXPERIMENTS": "Not:A:Reference"}
    result = run_cli("run", RECORDED, "--runtime", "docker", "--isolation", "container", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'Not:A:Reference' is not a valid image reference" in result.stderr
    assert not (workdir / "runs").exists()


def test_an_image_with_another_omnilab_is_refused(workdir: Path, tmp_path: Path) -> None:
    """The host and the container speak omnilab's own format: an image built from other
    recipes or another omnilab (here: a changed recipe) is out of date, and refused."""
    recipes = tmp_path / "dockerfiles"
    shutil.copytree(ROOT / "dockerfiles", recipes)
    recipe = recipes / "Dockerfile.experiments"
    recipe.write_text(recipe.read_text() + "# changed\n")
    env = {"OMNILAB_DOCKERFILES": str(recipes)}
    result = run_cli("run", RECORDED, "--runtime", "docker", "--isolation", "container", env=env)
    assert result.returncode == 2, result.stderr
    assert "is out of date" in result.stderr
    assert "`omnilab images build experiments`" in result.stderr
    assert not (workdir / "runs").exists()


def test_a_thread_left_running_does_not_hold_the_run(workdir: Path) -> None:
    """As on the host, the run ends when run() returns, whatever threads it left."""
    result, run = _run(EXPERIMENTS / "lingering.py", "--isolation", "container")
    assert result.returncode == 0, result.stderr
    assert run["summary"] == {"left": "a thread"}
    assert run["timings"]["experiment_s"] < 60  # the thread sleeps 120 s


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupting_a_container_run_removes_its_container(
    workdir: Path, sig: int, docker_scope: str
) -> None:
    proc = subprocess.Popen(
        [
            str(OMNILAB),
            "run",
            str(EXPERIMENTS / "sleepy.py"),
            "--runtime",
            "docker",
            "--isolation",
            "container",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = docker_client()

    def experiment_running() -> bool:
        scope = ["io.omnilab.service=experiment", f"{TEST_LABEL}={docker_scope}"]
        found = client.containers.list(filters={"label": scope})
        return any(c.status == "running" for c in found)

    try:
        assert wait_until(experiment_running, timeout=60), "the experiment never started"
        time.sleep(1)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGKILL:
        # Nobody left to clean up: the stack's watcher removes the experiment's container
        # with the services', within ten seconds.
        assert proc.returncode == -signal.SIGKILL
        scope = {"label": [f"{TEST_LABEL}={docker_scope}"]}
        assert wait_until(
            lambda: not client.containers.list(all=True, filters=scope, sparse=True), timeout=10
        )
    else:
        assert proc.returncode in (130, 143)


def test_what_the_experiment_leaves_running_in_its_container_is_ended_and_recorded(
    workdir: Path,
) -> None:
    """Inside the container omnilab's process is PID 1: orphans come to it, and it ends
    them (SIGTERM, then SIGKILL for one that ignores it) before handing back the outcome."""
    result, run = _run(EXPERIMENTS / "spawner.py", "--isolation", "container")
    assert result.returncode == 0, result.stderr
    assert run["status"] == "succeeded", run.get("error")
    assert "ended 4 process(es) the experiment left running" in result.stderr
    ended = run["environment"]["ended_processes"]
    assert len(ended) == 4, ended
    assert {e["name"] for e in ended} == {"sleep"}
    # Three end on SIGTERM; the one that traps it needs SIGKILL.
    assert sorted(e["signal"] for e in ended) == ["SIGKILL", "SIGTERM", "SIGTERM", "SIGTERM"]


def test_the_experiments_container_at_its_processes_bound_fails_the_run_naming_it(
    workdir: Path,
) -> None:
    result, run = _run(EXPERIMENTS / "bounded.py:ForkBomb", "--isolation", "container")
    assert result.returncode == 1, result.stderr
    assert run["status"] == "failed", run
    last = run["error"].splitlines()[-1]
    assert last.startswith("experiment hit its processes bound (48): the kernel refused it"), last


def test_the_experiments_container_at_its_memory_bound_fails_the_run_naming_it(
    workdir: Path,
) -> None:
    """Its child, not its first process, is killed: the engine's event tells."""
    result, run = _run(EXPERIMENTS / "bounded.py:GreedyChild", "--isolation", "container")
    assert result.returncode == 1, result.stderr
    assert run["status"] == "failed", run
    last = run["error"].splitlines()[-1]
    assert last.startswith("experiment hit its memory bound (256 MiB): the engine killed it"), last
