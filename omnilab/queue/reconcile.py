"""Making Redis and the tracking store agree again.

The store is the source of truth, so repair goes one way:

- an attempt whose process or worker died is ended (queued again or failed, per the
  run's retry setting), on this host at once, elsewhere once the worker's heartbeat is
  older than the TTL;
- a queued run with requirements that waits for capacity is placed once a live worker
  can take it, and one placed on a host whose workers are gone (or no longer offer what
  it requires) is placed again (:mod:`omnilab.queue.placement`);
- a queued run whose message is not in Redis (the API died between recording and
  sending, Redis restarted and lost it, a delivery failed before the claim, a killed
  host's dead connection took it) gets a new message;
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
from omnilab.queue.placement import WAITING, can_take, choose
from omnilab.requirements import Requirements
from omnilab.tracking.queued_runs import QueueStore, job_id
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import WorkerStore

log = logging.getLogger("omnilab.queue")


@dataclass
class Reconciled:
    ended: dict[str, str] = field(default_factory=dict)  # run id -> new status
    resent: list[str] = field(default_factory=list)
    placed: dict[str, str] = field(default_factory=dict)  # run id -> host
    waiting: dict[str, str] = field(default_factory=dict)  # run id -> why (newly said)
    skipped: bool = False  # another process held the lock
    queue_error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.ended or self.resent or self.placed)


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
        #: Interrupted promotions of another production, said once each.
        self._skipped_said: set[str] = set()

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
            workers = WorkerStore(store)
            dead = workers.end_dead(self.worker_ttl)
            if dead:
                # A host that died may have left blocked reads on Redis that take the
                # next messages and never run them (Broker.waiting): look at every run.
                self._full_wanted = True
            result.ended.update(dead)
            try:
                self._place(queue, workers, result)
                self._repair_messages(queue, result)
            except QueueUnavailable as exc:
                result.queue_error = str(exc)
                self._full_wanted = True
        for run_id, host in result.placed.items():
            log.info("run %s: placed on host %s", run_id[:8], host)
        for run_id, why in result.waiting.items():
            log.info("run %s: %s", run_id[:8], why)
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
            for record, why in recovery.skipped:
                # Once per promotion: it stays unfinished until a process configured for
                # its production meets it, and every sweep would say so again.
                if record.id not in self._skipped_said:
                    self._skipped_said.add(record.id)
                    log.warning("interrupted promotion not finished here: %s", why)
            error = "; ".join(f"{r.short_id}: {why}" for r, why in recovery.stuck)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if error and error != self._promotion_error:
            log.warning("interrupted promotion not finished yet: %s", error)
        self._promotion_error = error

    def _place(self, queue: QueueStore, workers: WorkerStore, result: Reconciled) -> None:
        """Place the runs that wait for capacity, and again those whose host can no
        longer take them; one read of the live workers, only when there are any."""
        todo = queue.to_place()
        if not todo:
            return
        capacity = workers.capacity(self.worker_ttl)
        messages = []
        for run in todo:
            try:
                required = Requirements.model_validate(run.requires)
            except ValueError as exc:  # e.g. a runtime plug-in no longer installed here
                why = f"{WAITING}its requirements cannot be read here: {exc}".splitlines()[0]
                if why != run.waiting and queue.wait_for_capacity(run.run_id, run.queue, why):
                    result.waiting[run.run_id] = why
                continue
            if run.waiting is None and run.host and can_take(required, run.host, capacity):
                continue
            placement = choose(required, capacity, self.broker.queue)
            if placement.host is not None:
                delivery = queue.place(run.run_id, placement.queue, placement.host)
                if delivery is None:  # taken or ended meanwhile
                    continue
                placed = capacity.placed
                placed[placement.host] = placed.get(placement.host, 0) + 1
                messages.append((run.run_id, placement.queue, delivery))
                result.placed[run.run_id] = placement.host
            elif (placement.waiting != run.waiting or run.host is not None) and (
                queue.wait_for_capacity(run.run_id, placement.queue, placement.waiting or "")
            ):
                result.waiting[run.run_id] = placement.waiting or ""
        # Recorded first: a send that fails leaves placed runs to the resend below.
        self.broker.send_many(messages)

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
