"""Making Redis and the tracking store agree again.

The store is the source of truth, so repair goes one way:

- an attempt whose process or worker died is ended (queued again or failed, per the
  run's retry setting), on this host at once, elsewhere once the worker's heartbeat is
  older than the TTL;
- a queued run whose message is not in Redis (the API died between recording and
  sending, Redis restarted and lost it, a delivery failed before the claim) gets a new
  message;
- a running attempt asked to stop that is still running gets its stop message again.

The API and every worker run this at start and then periodically; a PostgreSQL advisory
lock lets one of them do it at a time.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from omnilab.queue.broker import Broker, QueueUnavailable
from omnilab.tracking import queued_runs, workers
from omnilab.tracking.store import TrackingStore

log = logging.getLogger("omnilab.queue")

_LOCK_KEY = 0x6F6D6E71  # "omnq"


@dataclass
class Reconciled:
    ended: dict[str, str] = field(default_factory=dict)  # run id -> new status
    resent: list[str] = field(default_factory=list)
    skipped: bool = False  # another process held the lock
    queue_error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.ended or self.resent)


class Reconciler:
    """One process's sweeps. A full look at every queued run's message costs one Redis
    read per run, so it is done at the first sweep, when Redis restarted (its run id
    changed), after this process failed to send a message, and once a minute; the sweeps
    in between only look at the runs that became due since the previous one."""

    FULL_EVERY_S = 60.0

    def __init__(self, broker: Broker, *, worker_ttl: float, resend_after: float) -> None:
        self.broker = broker
        self.worker_ttl = worker_ttl
        self.resend_after = resend_after
        self._full_wanted = True
        self._last_full = -math.inf
        self._redis_id: str | None = None
        self._checked_until: datetime | None = None

    def request_full_check(self) -> None:
        """A message may be lost (a send failed): look at every queued run next time."""
        self._full_wanted = True

    def sweep(self, store: TrackingStore) -> Reconciled:
        conn = store.conn
        result = Reconciled()
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
        if not got or not got[0]:
            result.skipped = True
            return result
        try:
            store.reconcile_orphans()
            result.ended.update(workers.end_dead(conn, self.worker_ttl))
            try:
                self._repair_messages(conn, result)
            except QueueUnavailable as exc:
                result.queue_error = str(exc)
                self._full_wanted = True
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        for run_id in result.resent:
            log.info("run %s: its message was not in the queue; sent again", run_id[:8])
        for run_id, status in result.ended.items():
            log.info("run %s: its worker is gone; now %s", run_id[:8], status)
        return result

    def _repair_messages(self, conn: psycopg.Connection, result: Reconciled) -> None:
        broker = self.broker
        for job in queued_runs.cancelling(conn, self.resend_after):
            broker.stop(job)
        redis_id = broker.server_id()
        full = (
            self._full_wanted
            or redis_id != self._redis_id
            or time.monotonic() - self._last_full > self.FULL_EVERY_S
        )
        since = None if full else self._checked_until
        waiting, cutoff = queued_runs.waiting(conn, self.resend_after, since)
        sent = broker.waiting(queued_runs.job_id(r, d) for r, _, d in waiting)
        messages = []
        for run_id, queue, delivery in waiting:
            if queued_runs.job_id(run_id, delivery) in sent:
                continue
            next_delivery = queued_runs.next_delivery(conn, run_id)
            if next_delivery is None:  # taken or cancelled meanwhile
                continue
            messages.append((run_id, queue, next_delivery))
        broker.send_many(messages)
        result.resent.extend(m[0] for m in messages)
        self._checked_until = cutoff
        if full:
            self._full_wanted = False
            self._last_full = time.monotonic()
            self._redis_id = redis_id
