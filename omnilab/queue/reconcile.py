"""Making Redis and the tracking store agree again.

The store is the source of truth, so repair goes one way:

- an attempt whose process or worker died is ended (queued again or failed, per the
  run's retry setting), on this host at once, elsewhere once the worker's heartbeat is
  older than the TTL;
- a queued run whose message is not in Redis (the API died between recording and
  sending, Redis restarted and lost it, a delivery failed before the claim) gets a new
  message.

The API and every worker run this at start and then periodically; a PostgreSQL advisory
lock lets one of them do it at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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


def reconcile(
    store: TrackingStore, broker: Broker, *, worker_ttl: float, resend_after: float
) -> Reconciled:
    conn = store.conn
    result = Reconciled()
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
    if not got or not got[0]:
        result.skipped = True
        return result
    try:
        store.reconcile_orphans()
        result.ended.update(workers.end_dead(conn, worker_ttl))
        waiting = queued_runs.waiting(conn, resend_after)
        if not waiting:
            return result
        try:
            sent = broker.waiting(queued_runs.job_id(r, d) for r, _, d in waiting)
            for run_id, queue, delivery in waiting:
                if queued_runs.job_id(run_id, delivery) in sent:
                    continue
                delivery = queued_runs.next_delivery(conn, run_id)
                if delivery is None:  # taken or cancelled meanwhile
                    continue
                broker.send(run_id, queue, delivery)
                result.resent.append(run_id)
        except QueueUnavailable as exc:
            result.queue_error = str(exc)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    for run_id in result.resent:
        log.info("run %s: its message was not in the queue; sent again", run_id[:8])
    for run_id, status in result.ended.items():
        log.info("run %s: its worker is gone; now %s", run_id[:8], status)
    return result
