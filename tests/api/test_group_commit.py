"""The API's group commit: concurrent runs recorded by one statement, each request told
only once its own row is committed, messages sent only for committed runs. Real
PostgreSQL and Redis, in this process (the writer is what is under test)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from rq import Queue

from omnilab.api.group_commit import RunWriter
from omnilab.queue.broker import Broker
from omnilab.tracking.queued_runs import NewRun
from omnilab.tracking.store import TrackingStore
from tests.support import wait_until
from tests.support.queue_helpers import RedisServer, ThreadSender, new_database


@pytest.fixture
def fresh_db(tracking_url: str) -> str:
    url = new_database(tracking_url)
    TrackingStore(url).conn.close()  # migrated
    return url


def _run(experiment: str = "E", **params: Any) -> NewRun:
    return NewRun(
        id=uuid.uuid4().hex,
        experiment=experiment,
        source="/experiments/e.py",
        params=params,
        owner="api-key:test",
        queue="omnilab",
        max_attempts=2,
        submitted_by="k1",
    )


async def _write_all(dsn: str, redis_url: str, runs: list[NewRun]) -> list[Any]:
    broker = Broker(redis_url, "omnilab")
    sender = ThreadSender(broker)
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False)
    await pool.open()
    try:
        writer = RunWriter(pool, sender)
        results = await asyncio.gather(*(writer.write(run) for run in runs), return_exceptions=True)
        await writer.close()
    finally:
        await pool.close()
        sender.close()
        broker.close()
    return results


def test_concurrent_runs_share_one_commit_and_each_is_sent(
    fresh_db: str, redis_server: RedisServer
) -> None:
    runs = [_run(n=i) for i in range(100)]
    results = asyncio.run(_write_all(fresh_db, redis_server.url, runs))
    assert not [r for r in results if isinstance(r, BaseException)]
    # One statement for all of them: one transaction, one instant.
    assert len(set(results)) == 1
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            "SELECT r.id, r.status, r.params, r.created_at, q.queue, q.max_attempts, "
            "q.submitted_by, q.queued_at FROM omnilab.runs r "
            "JOIN omnilab.run_queue q ON q.run_id = r.id"
        ).fetchall()
    by_id = {row[0]: row for row in rows}
    assert set(by_id) == {run.id for run in runs}
    for run in runs:
        _, status, params, created_at, queue, max_attempts, submitted_by, queued_at = by_id[run.id]
        assert (status, params, queue, max_attempts, submitted_by) == (
            "queued",
            run.params,
            "omnilab",
            2,
            "k1",
        )
        assert created_at == queued_at == results[0]
    # Every committed run's message reaches the queue.
    queue = Queue("omnilab", connection=redis_server.client())
    assert wait_until(lambda: queue.count == 100, timeout=15)
    assert set(queue.job_ids) == {run.id for run in runs}


def test_a_run_the_database_refuses_fails_alone(fresh_db: str, redis_server: RedisServer) -> None:
    good = [_run(n=i) for i in range(5)]
    bad = _run(experiment="nul\x00here")  # jsonb cannot hold NUL
    runs = [*good[:2], bad, *good[2:]]
    results = asyncio.run(_write_all(fresh_db, redis_server.url, runs))
    assert isinstance(results[2], psycopg.DataError)
    assert not [r for i, r in enumerate(results) if i != 2 and isinstance(r, BaseException)]
    with psycopg.connect(fresh_db) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM omnilab.runs")}
    assert ids == {run.id for run in good}
    queue = Queue("omnilab", connection=redis_server.client())
    assert wait_until(lambda: queue.count == 5, timeout=15)
    assert bad.id not in queue.job_ids  # no message for a run that was not recorded


def test_an_unreachable_store_fails_every_waiting_request(redis_server: RedisServer) -> None:
    runs = [_run() for _ in range(3)]

    async def attempt() -> list[Any]:
        broker = Broker(redis_server.url, "omnilab")
        sender = ThreadSender(broker)
        pool = AsyncConnectionPool(
            "postgresql://nobody@127.0.0.1:1/none",
            min_size=0,
            max_size=1,
            timeout=1,
            kwargs={"connect_timeout": 1},
            open=False,
        )
        await pool.open()
        try:
            writer = RunWriter(pool, sender)
            return await asyncio.gather(*(writer.write(r) for r in runs), return_exceptions=True)
        finally:
            await pool.close()
            sender.close()
            broker.close()

    results = asyncio.run(attempt())
    # PoolTimeout is an OperationalError: the API answers 503 to each.
    assert all(isinstance(r, psycopg.OperationalError) for r in results), results
    assert Queue("omnilab", connection=redis_server.client()).count == 0
