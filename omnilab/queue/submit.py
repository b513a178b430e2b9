"""Queuing a run: record it in the tracking store, then send its message.

The record comes first and is the promise: once it is written the run will happen, even
if the message cannot be sent now (Redis down) or the process dies right after. Either
way the reconciler sends it later (see :mod:`omnilab.queue.reconcile`).
"""

from __future__ import annotations

import logging
from typing import Any

from omnilab.catalog import CatalogEntry
from omnilab.queue.broker import Broker, QueueUnavailable
from omnilab.queue.placement import Placement, Placer
from omnilab.queue.sender import Outbox
from omnilab.runner import new_run_id
from omnilab.tracking.queued_runs import QueueStore
from omnilab.tracking.records import RunRecord
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import WorkerStore

log = logging.getLogger("omnilab.queue")


def queue_run(
    store: TrackingStore,
    broker: Broker,
    entry: CatalogEntry,
    params: dict[str, Any],
    *,
    retries: int,
    worker_ttl: float = 30.0,
    owner: str | None = None,
    submitted_by: str | None = None,
    idempotency_key: str | None = None,
    sender: Outbox | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
    placer: Placer | None = None,
) -> tuple[RunRecord, bool, Placement]:
    """Queue ``entry`` with already validated ``params``; returns (run, whether new,
    where it went).

    With ``sender`` the message is handed to its background thread; else it is sent now.
    A run with requirements is placed first (``placer``, or the live workers read now);
    one that no live worker can take is recorded as waiting for capacity and not sent.
    """
    placement = Placement(queue=broker.queue)
    if entry.requires is not None:
        if placer is None:
            placer = Placer(broker.queue, lambda: WorkerStore(store).capacity(worker_ttl))
        placement = placer.place(entry.requires)
    record = new_record(entry, params, owner).model_copy(
        update={"name": name, "tags": list(tags or []), "waiting": placement.waiting}
    )
    queue = placement.queue
    record, created = QueueStore(store).submit(
        record,
        queue=queue,
        max_attempts=1 + retries,
        submitted_by=submitted_by,
        idempotency_key=idempotency_key,
        host=placement.host,
    )
    if not created or placement.waiting is not None:
        return record, created, placement
    if sender is not None:
        sender.put(record.id, queue)
    else:
        try:
            broker.send(record.id, queue)
        except QueueUnavailable as exc:
            log.warning("run %s recorded; its message will be sent later: %s", record.id[:8], exc)
    return record, created, placement


def new_record(entry: CatalogEntry, params: dict[str, Any], owner: str | None) -> RunRecord:
    return RunRecord(
        id=new_run_id(),
        experiment=entry.name,
        source=entry.source,
        status="queued",
        params=params,
        owner=owner,
        requires=entry.requires.as_json() if entry.requires is not None else None,
        code_sha256=entry.sha256 or None,
    )
