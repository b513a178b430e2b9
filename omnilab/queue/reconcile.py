"""Making Redis and the tracking store agree again.

The store is the source of truth, so repair goes one way:

- an attempt whose process or worker died is ended (queued again or failed, per the
  run's retry setting), on this host at once, elsewhere once the worker's heartbeat is
  older than the TTL;
- a queued run whose message is not in Redis (the API died between recording and
  sending, Redis restarted and lost it, a delivery failed before the claim) gets a new
  message;
- a running attempt asked to stop that is still running gets its stop message again;
- a promotion whose process died is finished (:mod:`omnilab.promote.recovery`): readers
  see a mix of old and new items until it is, so not later than the next sweep.

The API and every worker run this at start and then periodically; a PostgreSQL advisory
lock lets one of them do it at a time (:meth:`QueueStore.sweep_lock`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime

from omnilab.config import Settings, get_settings
from omnilab.promote.recovery import recover_if_free
from omnilab.queue.broker import Broker, QueueUnavailable
from omnilab.tracking.queued_runs import QueueStore, job_id
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import WorkerStore

log = logging.getLogger("omnilab.queue")


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
        self._settings: Settings | None = None
        self._promotion_error = ""

    def request_full_check(self) -> None:
        """A message may be lost (a send failed): look at every queued run next time."""
        self._full_wanted = True

    def sweep(self, store: TrackingStore) -> Reconciled:
        result = Reconciled()
        queue = QueueStore(store)
        with queue.sweep_lock() as got:
            if not got:
                result.skipped = True
                return result
            store.reconcile_orphans()
            result.ended.update(WorkerStore(store).end_dead(self.worker_ttl))
            try:
                self._repair_messages(queue, result)
            except QueueUnavailable as exc:
                result.queue_error = str(exc)
                self._full_wanted = True
        for run_id in result.resent:
            log.info("run %s: its message was not in the queue; sent again", run_id[:8])
        for run_id, status in result.ended.items():
            log.info("run %s: its worker is gone; now %s", run_id[:8], status)
        self._finish_promotions(store)
        return result

    def _finish_promotions(self, store: TrackingStore) -> None:
        """Interrupted promotions, finished without anyone asking; a failure is logged
        once and tried again next sweep, never fatal to the queue's repairs."""
        error = ""
        try:
            self._settings = self._settings or get_settings()
            recovery = recover_if_free(store, self._settings)
            for record in recovery.finished:
                log.info("promotion %s had been interrupted: %s", record.short_id, record.recovered)
            error = "; ".join(f"{r.short_id}: {why}" for r, why in recovery.stuck)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if error and error != self._promotion_error:
            log.warning("interrupted promotion not finished yet: %s", error)
        self._promotion_error = error

    def _repair_messages(self, queue: QueueStore, result: Reconciled) -> None:
        broker = self.broker
        for job in queue.cancelling(self.resend_after):
            broker.stop(job)
        redis_id = broker.server_id()
        full = (
            self._full_wanted
            or redis_id != self._redis_id
            or time.monotonic() - self._last_full > self.FULL_EVERY_S
        )
        since = None if full else self._checked_until
        waiting, cutoff = queue.waiting(self.resend_after, since)
        sent = broker.waiting(job_id(r, d) for r, _, d in waiting)
        messages = []
        for run_id, queue_name, delivery in waiting:
            if job_id(run_id, delivery) in sent:
                continue
            next_delivery = queue.next_delivery(run_id)
            if next_delivery is None:  # taken or cancelled meanwhile
                continue
            messages.append((run_id, queue_name, next_delivery))
        broker.send_many(messages)
        result.resent.extend(m[0] for m in messages)
        self._checked_until = cutoff
        if full:
            self._full_wanted = False
            self._last_full = time.monotonic()
            self._redis_id = redis_id
