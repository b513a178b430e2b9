"""The queue's records in the tracking store: claims, attempts, cancellation, migrations."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from omnilab.tracking import queued_runs
from omnilab.tracking.queued_runs import Claim, QueueStore
from omnilab.tracking.records import RunRecord
from omnilab.tracking.store import TrackingStore
from tests.support.queue_helpers import new_database


@pytest.fixture
def fresh_db(tracking_url: str) -> str:
    return new_database(tracking_url)


def _queued(store: TrackingStore, max_attempts: int = 1) -> str:
    record = RunRecord(id=uuid.uuid4().hex, experiment="E", status="queued", params={"n": 1})
    QueueStore(store).submit(record, queue="q", max_attempts=max_attempts)
    return record.id


def _claim(dsn: str, run_id: str, worker: str) -> Claim | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return QueueStore(conn).claim(
            run_id, worker=worker, gpu=None, run_dir="/x", environment={"pid": 1}
        )


def test_of_many_deliveries_exactly_one_claims(fresh_db: str) -> None:
    with TrackingStore(fresh_db) as store:
        run_id = _queued(store)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(_claim(fresh_db, run_id, f"w{i}")))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claims = [r for r in results if r is not None]
    assert len(claims) == 1 and claims[0].attempt == 1  # type: ignore[attr-defined]
    with TrackingStore(fresh_db) as store:
        assert store.get_run(run_id).status == "running"


def test_a_lost_attempt_is_queued_again_until_attempts_run_out(fresh_db: str) -> None:
    with TrackingStore(fresh_db) as store:
        queue = QueueStore(store)
        run_id = _queued(store, max_attempts=2)
        assert _claim(fresh_db, run_id, "w1/0") is not None
        assert queue.end_attempt(run_id, "worker gone") == "queued"
        info = queue.queue_info([run_id])[run_id]
        assert info.history[0]["reason"] == "worker gone" and info.worker is None
        assert queue.next_delivery(run_id) == 1
        assert queued_runs.job_id(run_id, 1) == f"{run_id}-1"
        assert _claim(fresh_db, run_id, "w2/0") is not None
        assert queue.end_attempt(run_id, "worker gone again") == "failed"
        record = store.get_run(run_id)
        assert record.status == "failed" and record.error == "worker gone again (attempt 2 of 2)"
        assert queue.end_attempt(run_id, "twice") is None
        assert queue.next_delivery(run_id) is None


def test_cancel_before_and_during_a_run(fresh_db: str) -> None:
    with TrackingStore(fresh_db) as store:
        queue = QueueStore(store)
        waiting = _queued(store)
        assert queue.request_cancel(waiting) == ("queued", True, None)
        assert store.get_run(waiting).status == "cancelled"
        assert _claim(fresh_db, waiting, "w") is None  # a late delivery finds it taken
        running = _queued(store, max_attempts=3)
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            QueueStore(conn).claim(
                running, worker="w", gpu=None, run_dir="/x", environment={}, job="j-1"
            )
        assert queue.request_cancel(running) == ("running", True, "j-1")
        assert queue.cancel_requested(running)
        assert queue.cancelling(0) == ["j-1"]
        # Its worker dies before stopping it: cancelled, not queued again.
        assert queue.end_attempt(running, "worker gone") == "cancelled"
        assert queue.request_cancel(running) == ("cancelled", True, "j-1")
        assert queue.cancelling(0) == []


def test_params_that_jsonb_cannot_hold_are_named() -> None:
    assert queued_runs.jsonable_params({"x": float("nan")}) == (
        "NaN and infinite numbers are not allowed"
    )
    assert queued_runs.jsonable_params({"x": "a\u0000"}) == "NUL characters are not allowed"
    assert queued_runs.jsonable_params({"x": [1, "ok"]}) is None
