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
from omnilab.queue.sender import Outbox
from omnilab.runner import new_run_id
from omnilab.tracking.queued_runs import QueueStore
from omnilab.tracking.records import RunRecord
from omnilab.tracking.store import TrackingStore

log = logging.getLogger("omnilab.queue")


def queue_run(
    store: TrackingStore,
    broker: Broker,
    entry: CatalogEntry,
    params: dict[str, Any],
    *,
    retries: int,
    owner: str | None = None,
    submitted_by: str | None = None,
    idempotency_key: str | None = None,
    sender: Outbox | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
) -> tuple[RunRecord, bool]:
    """Queue ``entry`` with already validated ``params``; returns (run, whether new).

    With ``sender`` the message is handed to its background thread; else it is sent now.
    """
    record = new_record(entry, params, owner).model_copy(
        update={"name": name, "tags": list(tags or [])}
    )
    queue = broker.queue_for(entry.needs_gpu)
    record, created = QueueStore(store).submit(
        record,
        queue=queue,
        max_attempts=1 + retries,
        submitted_by=submitted_by,
        idempotency_key=idempotency_key,
    )
    if created and sender is not None:
        sender.put(record.id, queue)
    elif created:
        try:
            broker.send(record.id, queue)
        except QueueUnavailable as exc:
            log.warning("run %s recorded; its message will be sent later: %s", record.id[:8], exc)
    return record, created


def new_record(entry: CatalogEntry, params: dict[str, Any], owner: str | None) -> RunRecord:
    return RunRecord(
        id=new_run_id(),
        experiment=entry.name,
        source=entry.source,
        status="queued",
        params=params,
        owner=owner,
    )
