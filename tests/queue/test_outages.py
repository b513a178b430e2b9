"""Workers through outages of the queue's Redis and of the tracking store: real servers,
SIGKILLed and started again on the same port and files, as an operator's restart or a
crash would leave them."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support import run_cli, wait_until
from tests.support.postgres_server import PostgresServer
from tests.support.queue_helpers import (
    Api,
    RedisServer,
    Service,
    _spawn,
    server_env,
    start_api,
)


@pytest.fixture
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """The queue's Redis with its append-only file on, so that what it held (workers'
    registrations among it) survives a SIGKILL, as in production."""
    server = RedisServer(workdir / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


def _slots(worker: Service) -> set[int]:
    """The pids of the worker's slot processes."""
    return {
        p.pid
        for p in psutil.Process(worker.proc.pid).children()
        if "omnilab.queue.slot" in " ".join(p.cmdline())
    }


def _status(api: Api, run_id: str) -> dict[str, Any] | None:
    """The run, or None while the API cannot answer (its store is coming back)."""
    try:
        with api.client("read") as client:
            response = client.get(f"/v1/runs/{run_id}")
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]


def _queue_soon(api: Api, experiment: str) -> str:
    """Queue a run, trying again while the API's pooled connections to a restarted store
    are found broken (each once: 503) and replaced."""
    ids: list[str] = []

    def queued() -> bool:
        with api.client() as client:
            response = client.post("/v1/runs", json={"experiment": experiment, "params": {}})
        if response.status_code == 202:
            ids.append(response.json()["id"])
        return bool(ids)

    assert wait_until(queued, timeout=30)
    return ids[0]


def _live_workers(api: Api) -> list[str] | None:
    try:
        with api.client("read") as client:
            response = client.get("/v1/workers")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return [w["id"] for w in response.json()["workers"]]


def test_a_queue_outage_kills_no_slot_and_runs_queued_during_it_start_after(
    api: Api, redis_server: RedisServer, start_worker
) -> None:
    """The report: runs that finish while the queue's Redis is down took their slots
    down with them, the restarted slots met their own registrations, and the worker
    stopped. Now every slot waits for Redis, and nothing is lost or run twice."""
    worker = start_worker("--concurrency", "2")
    worker.wait_for(": ready:", timeout=60)  # every slot and the task lane registered
    slots = _slots(worker)
    # Long enough that both are seen running at once on a loaded machine.
    finishing = [api.queue("Quick", {"n": 1, "pause": 10}) for _ in range(2)]
    both = lambda: all(api.run(r)["status"] == "running" for r in finishing)  # noqa: E731
    assert wait_until(both, timeout=60), worker.output
    redis_server.kill()
    during = api.queue("Quick", {"n": 1})  # recorded; its message waits for Redis
    # Both runs end meanwhile (the tracking store says so); rq cannot record that
    # without Redis.
    ended = lambda: all(api.run(r)["status"] == "succeeded" for r in finishing)  # noqa: E731
    assert wait_until(ended, timeout=60), worker.output
    # ... and each slot, finishing its job, finds Redis gone and says so.
    lost_said = lambda: worker.output.count("cannot reach Redis") >= 2  # noqa: E731
    assert wait_until(lost_said, timeout=30), worker.output
    assert worker.proc.poll() is None, worker.output
    redis_server.start()
    runs = [api.wait_status(r, "succeeded", timeout=60) for r in [*finishing, during]]
    assert [r["queue"]["attempt"] for r in runs] == [1, 1, 1]
    assert worker.proc.poll() is None, worker.output
    assert _slots(worker) == slots, f"a slot was restarted:\n{worker.output}"
    assert "unhandled exception" not in worker.output
    assert _live_workers(api) == [worker.worker_id]
    # Both slots take runs again.
    after = [api.queue("Quick", {"n": 1, "pause": 10}) for _ in range(2)]
    assert wait_until(lambda: all(api.run(r)["status"] == "running" for r in after), 60)
    assert {api.run(r)["queue"]["worker"] for r in after} == {
        f"{worker.worker_id}/0",
        f"{worker.worker_id}/1",
    }
    # Said by each slot as it goes (and by the supervisor's sweep), not at every try.
    lines = worker.output.splitlines()
    lost = [line for line in lines if ": slot " in line and "cannot reach Redis" in line]
    assert 2 <= len(lost) <= 4, worker.output
    assert "answers again" in worker.output

    # Told to stop while Redis is down: the runs in progress finish, and it exits
    # without waiting for Redis.
    redis_server.kill()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=60) == 0, worker.output
    assert [api.run(r)["status"] for r in after] == ["succeeded", "succeeded"]


def test_a_restarted_slot_clears_the_registration_its_predecessor_left(
    api: Api, redis_server: RedisServer, start_worker
) -> None:
    worker = start_worker("--concurrency", "1")
    worker.wait_for(": ready:", timeout=60)  # every slot and the task lane registered
    (slot,) = _slots(worker)
    os.kill(slot, signal.SIGKILL)  # its registration stays in Redis, live for minutes
    worker.wait_for("restarting it")
    run = api.wait_status(api.queue("Quick"), "succeeded", timeout=60)
    assert run["queue"]["worker"] == f"{worker.worker_id}/0"
    assert worker.proc.poll() is None, worker.output
    assert "left in Redis by its previous process" in worker.output
    (restarted,) = _slots(worker)
    assert restarted != slot


def test_a_tracking_store_outage_kills_no_worker_and_ends_no_run(
    workdir: Path, redis_server: RedisServer, start_worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Longer than the workers' TTL: no heartbeat could be written meanwhile, and the
    sweepers must not take the workers for dead (nor end their runs) when it is back."""
    store = PostgresServer(workdir / "store")
    store.start()
    api: Api | None = None
    try:
        ttl = {"OMNILAB_TRACKING_URL": store.url, "OMNILAB_WORKER_TTL": "3"}
        monkeypatch.setenv("OMNILAB_TRACKING_URL", store.url)
        api = start_api(workdir, {**server_env(redis_server), **ttl})
        # The workers' sweeps at their default pace: the API's come first.
        worker = start_worker("--concurrency", "2", env={**ttl, "OMNILAB_RECONCILE_INTERVAL": "5"})
        assert wait_until(lambda: len(_slots(worker)) == 2, timeout=60)
        slots = _slots(worker)
        spanning = api.queue("GpuEcho", {"hold": 12})  # no services, no metrics
        api.wait_status(spanning, "running")
        store.kill()
        time.sleep(7)
        assert worker.proc.poll() is None, worker.output
        store.start()
        # The API's pooled connections broke with the store: they are replaced, not
        # handed to requests that would fail.
        assert _live_workers(api) is not None
        assert wait_until(lambda: _live_workers(api) == [worker.worker_id], timeout=30), (
            worker.output
        )
        seen: dict[str, Any] = {}

        def finished() -> bool:
            seen.update(_status(api, spanning) or {})
            return seen.get("status") not in (None, "queued", "running")

        assert wait_until(finished, timeout=60), seen
        assert seen["status"] == "succeeded", seen.get("error")
        assert seen["queue"]["attempt"] == 1
        after = _queue_soon(api, "Quick")
        assert wait_until(lambda: (_status(api, after) or {}).get("status") == "succeeded", 60)
        assert worker.proc.poll() is None, worker.output
        assert _slots(worker) == slots, worker.output
        assert _live_workers(api) == [worker.worker_id]
        assert "tracking store answers again" in worker.output
    finally:
        if api is not None:
            api.service.stop()
        store.stop()


def test_a_worker_stops_on_a_fatal_error_and_names_it(
    api: Api, redis_server: RedisServer, start_worker
) -> None:
    """Redis back with other credentials is no outage to wait out: the worker stops,
    saying why, instead of dying over and over without a reason."""
    worker = start_worker("--concurrency", "1")
    worker.wait_for(": ready:", timeout=60)  # every slot and the task lane registered
    redis_server.kill()
    redis_server.password = "another-password"
    (redis_server.folder / "redis.conf").write_text(f"requirepass {redis_server.password}\n")
    redis_server.start()
    assert worker.proc.wait(timeout=90) == 1, worker.output
    said = worker.output[worker.output.rindex("error:") :]
    assert "stopping" in said and "password" in said.lower(), worker.output


def test_a_worker_started_while_redis_is_down_waits_for_it_and_takes_runs(
    workdir: Path, tracking_db: str
) -> None:
    """Redis away when the worker starts is an outage like any other (a reboot, servers
    and workers started together): it says once that it waits, and takes runs once Redis
    is up, instead of exiting."""
    redis_server = RedisServer(workdir / "redis")  # not started yet
    env = server_env(redis_server)
    worker = _spawn(["worker", "--concurrency", "1"], env, workdir)
    api: Api | None = None
    try:
        worker.wait_for("cannot reach Redis", timeout=60)
        assert "waiting for it" in worker.output
        assert redis_server.password not in worker.output
        time.sleep(3)  # a few tries, said once
        assert worker.proc.poll() is None, worker.output
        assert worker.output.count("cannot reach Redis") == 1, worker.output
        redis_server.start()
        worker.wait_for(": ready:", timeout=60)
        assert "answers again" in worker.output
        api = start_api(workdir, env)
        run = api.wait_status(api.queue("Quick"), "succeeded", timeout=60)
        assert run["queue"]["worker"] == f"{worker.worker_id}/0"
    finally:
        if api is not None:
            api.service.stop()
        assert worker.stop() == 0, worker.output
        redis_server.stop()


def test_a_worker_told_to_stop_while_it_waits_for_redis_exits_cleanly(
    workdir: Path, tracking_db: str
) -> None:
    redis_server = RedisServer(workdir / "redis")  # never started
    worker = _spawn(["worker"], server_env(redis_server), workdir)
    try:
        worker.wait_for("cannot reach Redis", timeout=60)
        worker.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert worker.proc.wait(timeout=30) == 0, worker.output
        assert "stopped before it started" in worker.output
        assert "Traceback" not in worker.output
    finally:
        worker.stop()


def test_a_worker_started_with_a_wrong_redis_password_stops_at_once_naming_it(
    workdir: Path, tracking_db: str, redis_server: RedisServer
) -> None:
    """Waiting cannot cure refused credentials: one line, exit 1, no password."""
    wrong = redis_server.url.replace(redis_server.password, "not-the-password")
    result = run_cli("worker", env={**server_env(redis_server), "REDIS_URL": wrong}, timeout=60)
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and "refuses this worker" in result.stderr
    assert "not-the-password" not in result.stderr


def test_a_worker_started_while_the_tracking_store_is_down_waits_for_it(
    workdir: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresServer(workdir / "store")  # not started yet
    env = {**server_env(redis_server), "OMNILAB_TRACKING_URL": store.url}
    monkeypatch.setenv("OMNILAB_TRACKING_URL", store.url)
    worker = _spawn(["worker", "--concurrency", "1"], env, workdir)
    api: Api | None = None
    try:
        worker.wait_for("cannot reach the tracking store", timeout=60)
        assert "waiting for it" in worker.output
        assert store.password not in worker.output
        time.sleep(2)
        assert worker.proc.poll() is None, worker.output
        store.start()
        worker.wait_for(": ready:", timeout=90)
        assert "tracking store answers again" in worker.output
        api = start_api(workdir, env)
        api.wait_status(api.queue("Quick"), "succeeded", timeout=60)
    finally:
        if api is not None:
            api.service.stop()
        assert worker.stop() == 0, worker.output
        store.stop()
