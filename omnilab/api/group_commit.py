"""Group commit for ``POST /v1/runs``: the runs of concurrent requests are recorded by one
statement, each request waiting for the commit that holds its own run.

A request is answered 202 only once its run's row is committed (the record is the
promise), so batching must not answer early; it only shares the cost. One batch is in
flight at a time: while PostgreSQL works on it, the requests that arrive meanwhile form
the next one. Alone, a request waits for no one (its batch is itself); under load a
statement, a commit and a pool checkout are paid once per batch instead of once per run.
The messages follow the commit, through the sender, as they did run by run.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import psycopg
from psycopg_pool import AsyncConnectionPool

from omnilab.queue.sender import Outbox
from omnilab.tracking.queued_runs import AsyncQueueStore, NewRun

log = logging.getLogger("omnilab.api")

#: Runs per statement at most (a few hundred kB of parameters at the body size limit).
MAX_BATCH = 256

_Waiting = tuple[NewRun, "asyncio.Future[datetime]"]


class RunWriter:
    def __init__(self, pool: AsyncConnectionPool, sender: Outbox) -> None:
        self.store = AsyncQueueStore(pool)
        self.sender = sender
        self._pending: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, run: NewRun) -> datetime:
        """Record ``run`` as queued, then hand its message to the sender; returns its
        ``created_at``. Raises what recording raised (psycopg's errors, the pool's)."""
        future: asyncio.Future[datetime] = asyncio.get_running_loop().create_future()
        self._pending.append((run, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="omnilab-run-writer")
        return await future

    async def close(self) -> None:
        """Wait for what is being recorded (the server is shutting down)."""
        if self._flusher is not None:
            await asyncio.wait({self._flusher})

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._record(batch)
        finally:
            self._flusher = None

    async def _record(self, batch: list[_Waiting]) -> None:
        try:
            created = await self.store.submit_many([run for run, _ in batch])
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            if len(batch) > 1:
                # Something in one run refused by the database: record each on its own,
                # so that only that run's request fails.
                for one in batch:
                    await self._record([one])
                return
            _fail(batch, exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every request of the batch gets the error (503)
            _fail(batch, exc)
            return
        for run, _ in batch:  # committed: whatever becomes of the requests, send
            if run.waiting is None:  # one waiting for capacity has nowhere to go yet
                self.sender.put(run.id, run.queue)
        for _, future in batch:
            if not future.done():  # a request cancelled meanwhile (client gone)
                future.set_result(created)


def _fail(batch: list[_Waiting], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
