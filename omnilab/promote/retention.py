"""How long a promotable run's stack data is retained, and removing it.

The data of a run whose experiment declares ``promotes`` stays (servers stopped) under
``data/experiments/<run id>/`` until the run is promoted (then released), discarded
(``omnilab discard RUN``), or ``OMNILAB_RETENTION_DAYS`` have passed (then removed by the
next promotable run on this host, by this host's workers, or by ``omnilab discard
--expired``). The run record says where it is (its host too) and in which state:
``runs.stack->'data'``. Only its host can act on it: elsewhere, the work is handed to that
host's worker (:mod:`omnilab.queue.handover`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab import retained_stack
from omnilab.errors import UsageError
from omnilab.host import host_name
from omnilab.promote.records import PromotionStore

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.progress import Reporter
    from omnilab.services.promotable import Promotable
    from omnilab.tracking.records import RunRecord
    from omnilab.tracking.store import TrackingStore


def data_record(path: Path, promotes: list[Promotable], settings: Settings) -> dict[str, Any]:
    """What the run record keeps about its kept stack data (no secrets)."""
    now = datetime.now(UTC)
    days = settings.retention_days
    return {
        "path": str(path),
        "state": "kept",
        "host": host_name(),
        "kept_at": now.isoformat(),
        "expires_at": (now + timedelta(days=days)).isoformat() if days else None,
        "promotes": [item.to_dict() for item in promotes],
    }


def run_data(record: RunRecord) -> dict[str, Any] | None:
    return (record.stack or {}).get("data")


def check_here(record: RunRecord, data: dict[str, Any]) -> Path:
    """The kept data's directory, if it is on this host and still there."""
    host = host_name()
    if data.get("host") not in (None, host):
        raise UsageError(
            f"run {record.short_id}'s stack data is on host {data['host']}, not {host}: "
            f"do this there (`omnilab promote` and `omnilab discard` hand it to the worker "
            f"of {data['host']})"
        )
    return Path(data["path"])


def release(store: TrackingStore, record: RunRecord, state: str, reporter: Reporter) -> bool:
    """Remove a run's kept data and record why (promoted, discarded, expired)."""
    data = run_data(record)
    if not data:
        return False
    removed = retained_stack.remove(check_here(record, data))
    PromotionStore(store).set_run_data(
        record.id, state=state, released_at=datetime.now(UTC).isoformat()
    )
    if removed:
        reporter.note(f"run {record.short_id}: stack data removed ({state}): {data['path']}")
    return removed


def discard(store: TrackingStore, ref: str, reporter: Reporter) -> dict[str, Any]:
    """``omnilab discard RUN``: the run will not be promoted; its stack data goes."""
    record = store.get_run(ref)
    data = run_data(record)
    if not data:
        raise UsageError(f"run {record.short_id} kept no stack data (nothing to discard)")
    if data.get("state") != "kept":
        raise UsageError(f"run {record.short_id}'s stack data was already {data.get('state')}")
    release(store, record, "discarded", reporter)
    return {
        "run_id": record.id,
        "experiment": record.experiment,
        "name": record.name,
        "path": data["path"],
        "state": "discarded",
    }


def sweep(store: TrackingStore, reporter: Reporter) -> list[str]:
    """Remove kept data past its retention on this host; returns the runs concerned."""
    now = datetime.now(UTC)
    host = host_name()
    expired = []
    for run_id, data in PromotionStore(store).retained_runs():
        expires = data.get("expires_at")
        if not expires or data.get("host") != host or datetime.fromisoformat(expires) > now:
            continue
        release(store, store.get_run(run_id), "expired", reporter)
        expired.append(run_id)
    return expired
