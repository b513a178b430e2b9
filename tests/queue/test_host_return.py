"""Hosts lost and found: a worker that comes back after its attempt was given to another
records no second outcome, and a host's restarted worker removes what its dead
predecessor left. Hosts are processes with different OMNILAB_HOST values."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from omnilab.queue.horse import RunStore
from omnilab.runtimes.state import StackState, all_states
from omnilab.tracking.queued_runs import QueueStore
from omnilab.tracking.records import RunRecord
from tests.support import wait_until
from tests.support.queue_helpers import Api, RedisServer, Service

B, C = "host-b", "host-c"


def _queued(store: RunStore) -> str:
    run_id = uuid.uuid4().hex
    record = RunRecord(id=run_id, experiment="Quick", status="queued", created_at=datetime.now(UTC))
    QueueStore(store).submit(record, queue="omnilab", max_attempts=2)
    return run_id


def _claim(store: RunStore, run_id: str, worker: str, job: str) -> int:
    claim = QueueStore(store).claim(
        run_id, worker=worker, gpu=None, run_dir="/nowhere", environment={}, job=job
    )
    assert claim is not None
    return claim.attempt


def test_an_attempt_taken_over_records_no_outcome(tracking_db: str, workdir: Path) -> None:
    """The rule itself, on the store: only the run's current attempt records an outcome
    or ends its attempt."""
    store = RunStore(tracking_db)
    try:
        run_id = _queued(store)
        queue = QueueStore(store)
        first = _claim(store, run_id, f"{B}-1-aaaa/0", "job-1")
        # A sweeper takes host-b's worker for dead; host-c's takes the run.
        assert queue.end_attempt(run_id, "its worker stopped answering") == "queued"
        second = _claim(store, run_id, f"{C}-1-cccc/0", "job-2")
        assert (first, second) == (1, 2)

        # Host-b comes back and finishes its attempt: none of it is recorded.
        kept = workdir / "data" / "experiments" / run_id
        kept.mkdir(parents=True)
        said: list[str] = []
        store.held, store.note = (first, f"{B}-1-aaaa/0"), said.append
        store.update_run(
            run_id,
            status="succeeded",
            summary={"by": B},
            stack={"data": {"state": "kept", "path": str(kept), "host": B}},
        )
        assert said == [
            f"attempt 1 on {B}-1-aaaa/0 was given up for lost meanwhile (the run is now "
            f"running as attempt 2 on {C}-1-cccc/0): its outcome (succeeded) is not "
            f"recorded; its kept stack data is removed ({kept})"
        ]
        assert not kept.exists()
        assert queue.end_attempt(run_id, "host-b stopped", attempt=first) is None
        assert queue.end_attempt(run_id, "host-b's slot lost it", job="job-1") is None
        assert not queue.record_cancelled(run_id, "cancelled on host-b", attempt=first)
        queue.fail_claimed(run_id, "failed on host-b", attempt=first)
        record = store.get_run(run_id)
        assert (record.status, record.summary, record.error) == ("running", None, None)

        # Host-c's attempt is the run's: its outcome is.
        store.held, store.note = (second, f"{C}-1-cccc/0"), None
        store.update_run(run_id, status="succeeded", summary={"by": C})
        record = store.get_run(run_id)
        assert (record.status, record.summary) == ("succeeded", {"by": C})
        # And nothing ends an attempt that is over.
        assert queue.end_attempt(run_id, "late", job="job-2") is None
        history = queue.queue_info([run_id])[run_id].history
        assert [h["attempt"] for h in history] == [1]
    finally:
        store.close()


def _pid_of(api: Api, run_id: str) -> int:
    environment = api.run(run_id)["environment"] or {}
    return int(environment.get("pid") or 0)


def _listening(redis_server: RedisServer, name: str) -> bool:
    from rq import Worker

    client = redis_server.client()
    try:
        return any(w.name == name for w in Worker.all(connection=client))
    finally:
        client.close()


def test_a_worker_back_after_a_takeover_records_nothing(
    api: Api, start_worker: Callable[..., Service], redis_server: RedisServer
) -> None:
    """Host-b's worker stops answering (SIGSTOP: its heartbeat ends, its run goes on);
    the API's sweep gives the run to host-c; host-b's run ends first, and is not
    recorded; host-c's is, once."""
    fast_ttl = {"OMNILAB_WORKER_TTL": "3"}
    # The sweeper (the API) judges by its own TTL: a server of this test's own.
    api.service.stop()
    from tests.support.queue_helpers import start_api

    server = start_api(Path.cwd(), {**api.env, **fast_ttl, "OMNILAB_HOST": "host-a"})
    try:
        server.keys = api.keys
        b = start_worker("--concurrency", "1", env={**fast_ttl, "OMNILAB_HOST": B})
        # Two lines 20 s apart, a metric point with each: host-b's second point comes
        # after host-c took the run over.
        run_id = server.queue("Quick", {"n": 2, "pause": 20}, retries=1)
        server.wait_status(run_id, "running", timeout=30)
        first_pid = _pid_of(server, run_id)
        # Host-c's slot waits for messages before host-b goes silent: the run's next
        # message is host-c's to take (host-b's slot is busy with the run).
        c = start_worker("--concurrency", "1", env={**fast_ttl, "OMNILAB_HOST": C})
        assert wait_until(lambda: _listening(redis_server, f"{c.worker_id}.0"), timeout=30)
        os.kill(b.proc.pid, signal.SIGSTOP)
        assert server.run(run_id)["status"] == "running"
        try:
            server.wait_status(run_id, ("queued", "running"), timeout=30)
            assert wait_until(lambda: _pid_of(server, run_id) != first_pid, timeout=30), (
                f"not taken over: {server.run(run_id)}\n--- api:\n{server.service.output[-3000:]}"
                f"\n--- host-c:\n{c.output[-3000:]}"
            )
            server.wait_status(run_id, "running", timeout=30)
            second_pid = _pid_of(server, run_id)
            assert second_pid != first_pid
            # Host-b's attempt ends (40 s after it began) while host-c's goes on.
            assert wait_until(lambda: "is not recorded" in b.output, timeout=60), b.output
            line = next(x for x in b.output.splitlines() if "is not recorded" in x)
            assert f"attempt 1 on {b.worker_id}/0 was given up for lost meanwhile" in line
            assert "running as attempt 2" in line and "its outcome (succeeded)" in line
            assert server.run(run_id)["status"] == "running"
        finally:
            os.kill(b.proc.pid, signal.SIGCONT)
        done = server.wait_status(run_id, "succeeded", timeout=90)
        assert done["summary"]["pid"] == second_pid
        queue = done["queue"]
        assert queue["attempt"] == 2 and queue["worker"].startswith(f"{c.worker_id}/")
        assert [h["attempt"] for h in queue["history"]] == [1]
        # Host-b's late point was dropped: its first (written while its attempt held the
        # run) and host-c's two are the run's.
        with psycopg.connect(os.environ["OMNILAB_TRACKING_URL"]) as conn:
            steps = conn.execute(
                "SELECT value FROM omnilab.metrics WHERE run_id = %s AND key = 'i' ORDER BY ts",
                (run_id,),
            ).fetchall()
        assert [v for (v,) in steps] == [0.0, 0.0, 1.0]
        assert "stopped answering" in queue["history"][0]["reason"]
        # Host-b registers again once it answers, and is stopped cleanly.
        b.wait_for("registered it again", timeout=30)
        assert b.stop() == 0
        assert server.run(run_id)["status"] == "succeeded"
    finally:
        server.service.stop()


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _crash(worker: Service) -> None:
    """The host goes down: the worker and every process under it (slots, the run's
    process, its stack's servers and their watcher) stop at once, then die."""
    everything = {worker.proc.pid}
    for _ in range(3):  # stopped first, so that no one reacts to another's death
        for pid in everything | _descendants(worker.proc.pid):
            everything.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        time.sleep(0.1)
    for pid in everything:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)


def test_a_host_back_removes_what_its_dead_worker_left(
    api: Api, start_worker: Callable[..., Service], workdir: Path
) -> None:
    state_dir = workdir / "state"
    # Another host's stack in a shared state folder, its owner gone: not ours to judge.
    gone = subprocess.Popen(["true"])
    gone.wait()
    theirs = StackState.create(state_dir, uuid.uuid4().hex, "local", host=C)
    theirs.owner_pid, theirs.owner_start = gone.pid, None
    theirs.save()
    try:
        worker = start_worker("--concurrency", "1", env={"OMNILAB_HOST": B})
        run_id = api.queue("Stacked", {"seconds": 6}, retries=1)
        api.wait_status(run_id, "running", timeout=60)
        assert wait_until(lambda: "sleeping" in _log(workdir, run_id), timeout=60)
        ours = [s for s in all_states(state_dir) if s.run_id == run_id]
        assert len(ours) == 1 and ours[0].host == B
        stack_dir = Path(ours[0].workdir or "")
        assert ours[0].services and stack_dir.is_dir()
        _crash(worker)
        assert ours[0].path is not None and ours[0].path.exists()
        assert stack_dir.is_dir()  # nobody removed it: its watcher died with the host
        assert api.run(run_id)["status"] == "running"

        back = start_worker("--concurrency", "1", env={"OMNILAB_HOST": B})
        back.wait_for(f"removed what dead processes of this host left: stack {ours[0].id[:12]}")
        assert not ours[0].path.exists() and not stack_dir.exists()
        assert theirs.path is not None and theirs.path.exists()
        # The run goes again, on the host back, and is recorded once.
        done = api.wait_status(run_id, "succeeded", timeout=90)
        assert done["queue"]["attempt"] == 2
        assert [h["attempt"] for h in done["queue"]["history"]] == [1]
        assert "ended without recording an outcome" in done["queue"]["history"][0]["reason"]
    finally:
        theirs.remove()


def _log(workdir: Path, run_id: str) -> str:
    path = workdir / "runs" / run_id / "logs" / "output.log"
    try:
        return path.read_text()
    except OSError:
        return ""
