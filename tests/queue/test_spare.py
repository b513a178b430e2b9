"""A slot's spare: the run process forked and prepared before its message arrives. Runs
start in it, see the experiment files and the git state as they are when the run comes,
and no spare outlives its worker or stays dead."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from omnilab.gitstate import SETTLE_S
from tests.support import API_EXPERIMENTS, wait_until
from tests.support.queue_helpers import Api, RedisServer, server_env, start_api


def _tree(supervisor: int) -> list[psutil.Process]:
    """The worker's slots and their children (spares, horses): processes started with
    the slot's command line, which names its supervisor."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if f"--parent {supervisor}" in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _spares(supervisor: int) -> list[psutil.Process]:
    tree = _tree(supervisor)
    pids = {p.pid for p in tree}
    spares = []
    for proc in tree:
        try:
            if proc.ppid() in pids and proc.status() != psutil.STATUS_ZOMBIE:
                spares.append(proc)
        except psutil.NoSuchProcess:
            continue
    return spares


def _started_at(pid_start: int) -> float:
    """A process's start (clock ticks since boot, as a run records it) as a timestamp."""
    boot = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    return boot + pid_start / os.sysconf("SC_CLK_TCK")


def _iso(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


def test_a_run_starts_in_a_process_made_before_it_was_queued(api: Api, start_worker) -> None:
    worker = start_worker()
    assert wait_until(lambda: len(_spares(worker.proc.pid)) == 1, timeout=20)
    time.sleep(1.5)  # clock ticks are coarse: leave no doubt about which came first
    run_id = api.queue("Quick", {"n": 1})
    run = api.wait_status(run_id, "succeeded")
    pid = run["environment"]["pid"]
    assert run["summary"]["pid"] == pid  # the experiment ran in the recorded process
    assert _started_at(run["environment"]["pid_start"]) < _iso(run["created_at"]) - 1
    # The next run finds the next spare ready, started while the first one ran.
    second = api.wait_status(api.queue("Quick", {"n": 1}), "succeeded")
    assert second["environment"]["pid"] != pid
    assert _started_at(second["environment"]["pid_start"]) < _iso(second["created_at"])


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_no_spare_outlives_its_worker(api: Api, start_worker, how: str) -> None:
    worker = start_worker("--concurrency", "2", "--gpus", "none")
    supervisor = worker.proc.pid
    assert wait_until(lambda: len(_spares(supervisor)) == 2, timeout=20)
    api.wait_status(api.queue("Quick", {"n": 1}), "succeeded")
    assert wait_until(lambda: len(_spares(supervisor)) == 2, timeout=20)
    if how == "stop":
        assert worker.stop() == 0
    else:
        os.kill(supervisor, signal.SIGKILL)
        worker.proc.wait()
    assert wait_until(lambda: not _tree(supervisor), timeout=15), _tree(supervisor)


def test_a_spare_that_died_is_replaced_and_loses_no_run(api: Api, start_worker) -> None:
    worker = start_worker()
    assert wait_until(lambda: len(_spares(worker.proc.pid)) == 1, timeout=20)
    (dead,) = _spares(worker.proc.pid)
    dead.kill()
    run = api.wait_status(api.queue("Quick", {"n": 2}), "succeeded")
    assert run["environment"]["pid"] != dead.pid
    assert wait_until(lambda: len(_spares(worker.proc.pid)) == 1, timeout=20)
    assert _spares(worker.proc.pid)[0].pid != dead.pid


@pytest.fixture
def experiments(workdir: Path) -> Path:
    """A folder of experiments in a git repository of its own, settled (not changed in
    the last seconds), so that a worker's spare keeps its reading of the git state."""
    repo = workdir / "repo"
    folder = repo / "experiments"
    folder.mkdir(parents=True)
    shutil.copy(API_EXPERIMENTS / "quick.py", folder / "quick.py")
    (repo / "README").write_text("one\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _commit(repo, "one")
    then = time.time() - 60
    for path in [*repo.rglob("*"), repo]:
        os.utime(path, (then, then), follow_symlinks=False)
    time.sleep(SETTLE_S + 0.2)  # ctimes cannot be back-dated
    return folder


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", message)
    return _git(repo, "rev-parse", "HEAD")


def test_git_state_and_files_changed_while_a_spare_waits_are_those_recorded_and_run(
    workdir: Path, tracking_db: str, redis_server: RedisServer, start_worker, experiments: Path
) -> None:
    repo = experiments.parent
    env = {"OMNILAB_EXPERIMENTS_DIR": str(experiments)}
    api = start_api(workdir, server_env(redis_server, experiments))
    try:
        worker = start_worker(env=env)
        first = api.wait_status(api.queue("Quick", {"n": 1}), "succeeded")
        assert first["environment"]["git"] == {
            "commit": _git(repo, "rev-parse", "HEAD"),
            "branch": "main",
            "dirty": False,
        }
        # The next spare is ready (and has read the repository) before anything changes.
        assert wait_until(lambda: len(_spares(worker.proc.pid)) == 1, timeout=20)
        time.sleep(1)
        (repo / "README").write_text("two\n")
        second = api.wait_status(api.queue("Quick", {"n": 1}), "succeeded")
        assert second["environment"]["git"]["dirty"] is True
        assert second["environment"]["git"]["commit"] == first["environment"]["git"]["commit"]

        assert wait_until(lambda: len(_spares(worker.proc.pid)) == 1, timeout=20)
        time.sleep(1)
        commit = _commit(repo, "two")
        quick = experiments / "quick.py"
        quick.write_text(quick.read_text().replace('label: str = "line"', 'label: str = "edited"'))
        time.sleep(1.2)  # a slot looks at the experiment files at most once a second
        third_id = api.queue("Quick", {"n": 1})
        third = api.wait_status(third_id, "succeeded")
        assert third["environment"]["git"] == {"commit": commit, "branch": "main", "dirty": True}
        with api.client("read") as client:
            log = client.get(f"/v1/runs/{third_id}/logs", params={"follow": "false"}).text
        assert "edited 0" in log, log
    finally:
        api.service.stop()


def test_a_spare_whose_store_connection_was_dropped_runs_on_a_new_one(
    api: Api, start_worker, tracking_db: str
) -> None:
    """The database ended the idle spare's session (a restart, an idle timeout): the run
    notices before its claim and opens another connection instead of failing."""
    import psycopg

    worker = start_worker()
    assert wait_until(lambda: len(_spares(worker.proc.pid)) == 1, timeout=20)
    (ready,) = _spares(worker.proc.pid)

    def store_ports() -> set[int]:
        return {c.laddr.port for c in ready.net_connections("tcp") if c.raddr}

    assert wait_until(lambda: bool(store_ports()), timeout=20)
    with psycopg.connect(tracking_db, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND client_port = ANY(%s)",
            (list(store_ports()),),
        ).fetchall()
    assert ended and all(row[0] for row in ended)
    time.sleep(2.5)  # idle long enough to be checked before use
    run = api.wait_status(api.queue("Quick", {"n": 1}), "succeeded")
    assert run["environment"]["pid"] == ready.pid
