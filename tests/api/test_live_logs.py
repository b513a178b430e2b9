"""A queued run's log live through Redis (queue/live_log.py): an API host that cannot see
the worker's log file streams it from the run's Redis stream, every line once, in order,
with the file's byte offsets as ids; Redis going away during a run costs the run nothing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from omnilab.queue.live_log import stream_key
from tests.api.test_runs import sse_events
from tests.support.queue_helpers import Api, RedisServer, server_env, start_api

Event = tuple[str, str | None, str]


def file_lines(path: Path) -> list[tuple[str, str]]:
    """(id, text) of each line of a log file: the id is the byte offset after it."""
    out, offset = [], 0
    for raw in path.read_bytes().split(b"\n")[:-1]:
        offset += len(raw) + 1
        out.append((str(offset), raw.decode()))
    return out


def follow(
    api: Api, run_id: str, *, after: str | None = None, until: str | None = None
) -> list[Event]:
    """The events of the run's log stream, from ``after`` (Last-Event-ID), to its end or
    to the first line holding ``until`` (the connection is then dropped)."""
    headers = {"Last-Event-ID": after} if after else {}
    events: list[Event] = []
    with (
        api.client("read") as client,
        client.stream("GET", f"/v1/runs/{run_id}/logs", headers=headers, timeout=60) as stream,
    ):
        assert stream.status_code == 200
        for event in sse_events(stream):
            events.append(event)
            if until is not None and event[0] == "log" and until in event[2]:
                break
    return events


def test_an_api_host_without_the_log_file_streams_the_run_live_through_redis(
    workdir: Path, tracking_db: str, redis_server: RedisServer, start_worker
) -> None:
    env = server_env(redis_server)
    # Two hosts: each its own host name and runs folder (the API cannot see the file).
    api = start_api(
        workdir, {**env, "OMNILAB_RUNS_DIR": str(workdir / "api-runs"), "OMNILAB_HOST": "api-1"}
    )
    try:
        start_worker(
            env={
                "OMNILAB_RUNS_DIR": str(workdir / "worker-runs"),
                "OMNILAB_HOST": "worker-1",
                "OMNILAB_LOG_STREAM_TTL": "300",
            }
        )
        api.client("read").close()  # its key made now, not while the run goes on
        run_id = api.queue("Quick", {"n": 40, "pause": 0.15, "label": "tick"})
        # Followed live, dropped at tick 9, resumed from the last id received.
        first = follow(api, run_id, until="tick 9")
        arrived = datetime.now(UTC)
        last_id = [e for e in first if e[0] == "log"][-1][1]
        rest = follow(api, run_id, after=last_id)
        afterwards = follow(api, run_id)  # finished, no file here: what the stream holds
        halfway = next(e for e in afterwards if e[2] == "tick 19")
        resumed = follow(api, run_id, after=halfway[1])
        record = api.run(run_id)
    finally:
        api.service.stop()
    assert record["status"] == "succeeded"
    assert arrived < datetime.fromisoformat(record["finished_at"]), "tick 9 came after the end"
    log = workdir / "worker-runs" / run_id / "logs" / "output.log"
    assert not (workdir / "api-runs" / run_id).exists()
    expected = file_lines(log)
    assert [t for _, t in expected if t.startswith("tick")] == [f"tick {i}" for i in range(40)]
    # Every line once, in order, with the file's byte offsets as ids; resuming goes on
    # exactly after the line named.
    live = [(e[1], e[2]) for e in first + rest if e[0] == "log"]
    assert live == expected
    assert [(e[1], e[2]) for e in afterwards if e[0] == "log"] == expected
    after_half = expected[expected.index((halfway[1], "tick 19")) + 1 :]
    assert [(e[1], e[2]) for e in resumed if e[0] == "log"] == after_half
    for events in (rest, afterwards, resumed):
        assert events[0][0] == "status" and events[-1][0] == "end"
        end = json.loads(events[-1][2])
        assert end["status"] == "succeeded" and end["log_found"] is True
    # The stream expires after the run's end.
    ttl = redis_server.client().ttl(stream_key(run_id))
    assert 0 < ttl <= 300


def test_redis_going_away_during_a_run_costs_the_run_nothing(
    api: Api, redis_server: RedisServer, start_worker, workdir: Path
) -> None:
    start_worker()
    run_id = api.queue("Quick", {"n": 60, "pause": 0.1, "label": "tick"})
    log = workdir / "runs" / run_id / "logs" / "output.log"
    deadline = time.monotonic() + 60
    while b"tick 2" not in (log.read_bytes() if log.exists() else b""):
        assert time.monotonic() < deadline, "the run printed nothing"
        time.sleep(0.05)
    redis_server.kill()
    assert b"tick 59" not in log.read_bytes(), "Redis should go away during the run"
    try:
        run = api.wait_status(run_id, ("succeeded", "failed"), timeout=60)
    finally:
        redis_server.start()  # the worker's own bookkeeping waits for it
    assert run["status"] == "succeeded", run["error"]
    assert run["timings"]["experiment_s"] < 10.0  # 60 lines 0.1 s apart: not held up
    lines = [text for _, text in file_lines(log)]
    assert [t for t in lines if t.startswith("tick")] == [f"tick {i}" for i in range(60)]
    assert lines[-1].startswith("omnilab: succeeded")
    # The API, on the worker's host, still streams the complete log from the file.
    with api.client("read") as client:
        events = list(sse_events(client.get(f"/v1/runs/{run_id}/logs", timeout=30)))
    assert [e[2] for e in events if e[0] == "log"] == lines
