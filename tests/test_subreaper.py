"""What an experiment starts ends with its run: on the CLI, in a worker's horse, and in
any process that runs one (a notebook's kernel), which is a subreaper meanwhile only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnilab.subreaper import ProcessScope, is_subreaper
from omnilab.tracking.store import TrackingStore
from tests.support import EXPERIMENTS, run_cli, wait_until
from tests.support.queue_helpers import server_env, start_api

SPAWNER = EXPERIMENTS / "spawner.py"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def spawned(workdir: Path) -> Iterator[Path]:
    """Where the spawner writes its children's pids; whatever survives is killed after
    the test (so that a failure here leaves nothing running for 5 minutes)."""
    path = workdir / "pids.json"
    yield path
    if path.exists():
        for pid in json.loads(path.read_text()).values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _check_ended(pids_file: Path, ended: list[dict]) -> None:
    pids = json.loads(pids_file.read_text())
    assert set(pids) == {"plain", "session", "daemon", "stubborn"}
    # Gone, not merely orphaned: init does not have them either.
    assert wait_until(lambda: not any(_alive(p) for p in pids.values()), timeout=5), {
        k: p for k, p in pids.items() if _alive(p)
    }
    # The record says what had to be ended, and how.
    by_pid = {e["pid"]: e for e in ended}
    assert set(pids.values()) <= set(by_pid), ended
    assert {by_pid[p]["name"] for p in pids.values()} == {"sleep"}
    assert by_pid[pids["plain"]]["signal"] == "SIGTERM"
    assert by_pid[pids["stubborn"]]["signal"] == "SIGKILL"  # it ignores SIGTERM


def test_omnilab_run_ends_what_the_experiment_left_running(spawned: Path) -> None:
    result = run_cli("run", SPAWNER, "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert "ended 4 process(es) the experiment left running" in result.stderr
    with TrackingStore.open() as store:
        recorded = store.get_run(run["id"])
    _check_ended(spawned, recorded.environment["ended_processes"])


def test_a_worker_run_ends_what_the_experiment_left_running(
    spawned: Path, workdir: Path, redis_server, start_worker, tmp_path: Path
) -> None:
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "spawner.py").write_text(SPAWNER.read_text())
    env = {**server_env(redis_server), "OMNILAB_EXPERIMENTS_DIR": str(folder)}
    api = start_api(workdir, env)
    try:
        start_worker(env={"OMNILAB_EXPERIMENTS_DIR": str(folder)})
        run = api.wait_status(api.queue("Spawner"), "succeeded", timeout=120)
        with TrackingStore.open() as store:
            recorded = store.get_run(run["id"])
        _check_ended(spawned, recorded.environment["ended_processes"])
    finally:
        api.service.stop()


def test_the_scope_takes_orphans_and_leaves_what_was_there_before() -> None:
    assert not is_subreaper()
    before = subprocess.Popen(["sleep", "60"])
    try:
        with ProcessScope(grace_s=1.0) as scope:
            assert is_subreaper()
            # A double fork: without the subreaper, the sleep would belong to init.
            out = subprocess.run(
                ["sh", "-c", "sleep 61 >/dev/null 2>&1 & echo $!"],
                capture_output=True,
                text=True,
                check=True,
            )
            orphan = int(out.stdout)
            assert wait_until(
                lambda: (
                    Path(f"/proc/{orphan}/stat").read_text().rsplit(")", 1)[1].split()[1]
                    == str(os.getpid())
                ),
                timeout=5,
            ), "the orphan was not re-parented to this process"
        assert [e["pid"] for e in scope.ended] == [orphan]
        assert not _alive(orphan)
        # Reaped: no zombie of it is left to this process either.
        assert wait_until(lambda: not Path(f"/proc/{orphan}").exists(), timeout=2)
        assert not is_subreaper()  # only for the run's duration (a notebook's kernel)
        assert before.poll() is None  # started before the run: not the run's
    finally:
        before.kill()
        before.wait()
    started = time.monotonic()
    with ProcessScope() as quiet:
        pass
    assert quiet.ended == [] and time.monotonic() - started < 1


def test_what_a_process_from_before_starts_meanwhile_is_its_own() -> None:
    """A server started before the run forks during it (a PostgreSQL backend for a new
    connection): the fork is the server's, and ending it would break the server."""
    server = subprocess.Popen(["sh", "-c", "sleep 0.3; sleep 60 & wait"])
    try:
        with ProcessScope(grace_s=1.0) as scope:

            def forked() -> list[int]:
                """The server's `sleep 60` (not its `sleep 0.3`, before it)."""
                children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
                found = []
                for pid in children.read_text().split():
                    with contextlib.suppress(OSError):
                        if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0060\x00":
                            found.append(int(pid))
                return found

            assert wait_until(lambda: len(forked()) == 1, timeout=10)
            (child,) = forked()
        assert scope.ended == []
        assert _alive(child) and server.poll() is None
    finally:
        server.kill()
        server.wait()


def test_a_run_on_the_embedded_store_ends_none_of_its_servers(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded tracking store's PostgreSQL, started by the first run and running
    already for the second, answers the runs' connections with backends of its own:
    none is the experiment's."""
    monkeypatch.delenv("OMNILAB_TRACKING_URL", raising=False)
    experiment = workdir / "serverless.py"
    experiment.write_text(
        "import time\n\nfrom omnilab import Experiment\n\n\n"
        "class Serverless(Experiment):\n"
        "    def run(self, ctx):\n"
        "        for step in range(3):\n"
        "            ctx.log_metric('tick', step, step=step)\n"
        "            time.sleep(0.3)\n"
        "        return {'ok': 1}\n"
    )
    for _ in range(2):
        result = run_cli("run", experiment, "--json", cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert "left running" not in result.stderr
        assert "ended_processes" not in json.loads(result.stdout)["environment"]
