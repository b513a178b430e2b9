"""Promote, roll back and discard wherever the data is: here, or handed to its host.

What the API, the web UI and ``omnilab promote`` / ``rollback`` / ``discard`` call. Each
looks up where the data is: a run's kept stack data names its host, a promotion the host
that carried it out (whose production configuration it went into). Here: the work is
done in this process, as before. Elsewhere: it is handed to that host's task lane
(:mod:`omnilab.queue.hosttasks`), and its outcome comes back as the same result or
error. Only work that would act goes over: a run with no data kept, or a promotion that
cannot be rolled back, is refused here, with the usual message.
"""

from __future__ import annotations

from typing import Any

from omnilab import environment
from omnilab.host import host_name
from omnilab.progress import Reporter
from omnilab.promote import PromotionResult, RollbackResult
from omnilab.promote import promote as promote_here
from omnilab.promote import rollback as rollback_here
from omnilab.promote.flow import check_on_conflict
from omnilab.promote.records import PromotionStore
from omnilab.promote.retention import run_data
from omnilab.queue.hosttasks import HandOver, hand_over
from omnilab.queue.settings import QueueSettings
from omnilab.tracking.records import RunRecord
from omnilab.tracking.store import TrackingStore


def kept_on(record: RunRecord) -> str | None:
    """The host holding the run's kept stack data; None when none is kept."""
    data = run_data(record) or {}
    if data.get("state") != "kept":
        return None
    host = data.get("host")
    return str(host) if host else None


def _elsewhere(host: str | None) -> bool:
    return host is not None and host != host_name()


def promote(
    run: str,
    *,
    dry_run: bool = False,
    on_conflict: str = "fail",
    actor: str | None = None,
    settings: QueueSettings,
    reporter: Reporter,
) -> PromotionResult:
    """:func:`omnilab.promote.promote` on the host that holds the run's data; the plan
    (``dry_run``) too, since it reopens the run's stack."""
    check_on_conflict(on_conflict)
    # Held open around the work done here: an embedded store is not stopped and
    # started again in between.
    with TrackingStore.open(settings) as store:
        record = store.get_run(run)
        host = kept_on(record)
        if not _elsewhere(host):
            return promote_here(
                record.id,
                dry_run=dry_run,
                on_conflict=on_conflict,
                actor=actor,
                settings=settings,
                reporter=reporter,
            )
    assert host is not None
    value = hand_over(
        settings,
        HandOver(
            host=host,
            kind="promote",
            args={
                "run": record.id,
                "dry_run": dry_run,
                "on_conflict": on_conflict,
                "actor": actor or environment.owner(),
            },
            situation=f"run {record.short_id}'s kept data is on host {host}",
            command=f"omnilab promote {record.short_id}",
            result_model=PromotionResult.model_validate,
        ),
        reporter,
    )
    return PromotionResult.model_validate(value)


def rollback(
    promotion: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    actor: str | None = None,
    settings: QueueSettings,
    reporter: Reporter,
) -> RollbackResult:
    """:func:`omnilab.promote.rollback` on the host that carried the promotion out: it
    went into production as that host configured it."""
    with TrackingStore.open(settings) as store:
        record = PromotionStore(store).get(promotion)
        acts = record.status == "succeeded" and record.pruned_at is None
        if not (acts and _elsewhere(record.host)):
            return rollback_here(
                record.id,
                dry_run=dry_run,
                force=force,
                actor=actor,
                settings=settings,
                reporter=reporter,
            )
    assert record.host is not None
    value = hand_over(
        settings,
        HandOver(
            host=record.host,
            kind="rollback",
            args={
                "promotion": record.id,
                "dry_run": dry_run,
                "force": force,
                "actor": actor or environment.owner(),
            },
            situation=f"promotion {record.short_id} was carried out on host {record.host}",
            command=f"omnilab rollback {record.short_id}",
            result_model=RollbackResult.model_validate,
        ),
        reporter,
    )
    return RollbackResult.model_validate(value)


def discard(run: str, *, settings: QueueSettings, reporter: Reporter) -> dict[str, Any]:
    """:func:`omnilab.promote.retention.discard` on the host that holds the data."""
    from omnilab.promote import retention

    with TrackingStore.open(settings) as store:
        record = store.get_run(run)
        host = kept_on(record)
        if not _elsewhere(host):
            return retention.discard(store, record.id, reporter)
    assert host is not None
    value: dict[str, Any] = hand_over(
        settings,
        HandOver(
            host=host,
            kind="discard",
            args={"run": record.id},
            situation=f"run {record.short_id}'s kept data is on host {host}",
            command=f"omnilab discard {record.short_id}",
        ),
        reporter,
    )
    return value
