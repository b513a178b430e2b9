"""Finishing promotions whose process died (SIGKILL, a crash, a lost machine).

A promotion records each item's progress (the staging place is named before anything is
copied) and its **commit**: the moment every item is staged and verified, just before the
first switch. A promotion still ``running`` when someone else holds the promotion lock has
lost its process (a running promotion holds the lock until it ends), and is finished:

- committed: **rolled forward**. Each item not yet switched is switched: production ends
  all-new, as if the process had lived. Only if production refuses a switch (it changed
  meanwhile: a key appeared under a name being created) is the promotion undone instead;
  if production cannot be reached, it stays as it is and the next attempt tries again
  (and nothing else is promoted or rolled back until it is finished);
- not committed: **undone**. Switched items (an undo after a failed switch, itself
  interrupted) are switched back and the staged copies removed: production ends as it
  was before that promotion.

The record then says what was done, item by item, and by whom. Who finishes it: the next
``promote``, ``rollback`` or ``prune`` (under the lock, first), ``omnilab promotions
recover``, and the reconcilers of the API and of every worker, every few seconds
(:func:`recover_if_free`), so that readers see a mix of old and new items for seconds at
most.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from omnilab import environment
from omnilab.host import host_name
from omnilab.progress import QuietReporter
from omnilab.promote.items import item_from_dict, other_production, switch_order
from omnilab.promote.records import PromotionRecord, PromotionStore
from omnilab.services.promotable import ItemRecord, PromotionFailed
from omnilab.tracking.store import TrackingStore

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.progress import Reporter


@dataclass
class Recovery:
    """What one pass did: promotions finished, and committed ones that could not be."""

    finished: list[PromotionRecord] = field(default_factory=list)
    #: (record, why): committed, not rolled forward yet; production is mixed meanwhile.
    stuck: list[tuple[PromotionRecord, str]] = field(default_factory=list)
    #: (record, why): left alone, made against a production other than the one
    #: configured here; another process (configured for it) must finish it.
    skipped: list[tuple[PromotionRecord, str]] = field(default_factory=list)

    def raise_if_stuck(self) -> None:
        """Nothing may be promoted or rolled back while production is mixed: a later
        switch of the same item would be overwritten when this one is finished."""
        if self.stuck:
            raise PromotionFailed(
                "; ".join(
                    f"promotion {r.short_id} was interrupted after its commit and could not "
                    f"be finished yet ({why}); production holds some of its items and not "
                    "the others until it is: fix that and run `omnilab promotions recover`"
                    for r, why in self.stuck
                )
            )


def reconcile(promotions: PromotionStore, settings: Settings, reporter: Reporter) -> Recovery:
    """Finish every interrupted promotion (call with the promotion lock held)."""
    recovery = Recovery()
    for record in promotions.running():
        elsewhere = other_production(record.items, settings)
        if elsewhere:
            why = (
                f"promotion {record.short_id} was interrupted while promoting into "
                f"{', '.join(elsewhere)}, not the production configured here; run "
                "`omnilab promotions recover` with that configuration to finish it"
            )
            reporter.note(why)
            recovery.skipped.append((record, why))
            continue
        if record.committed_at is not None:
            refused = _roll_forward(promotions, record, settings, reporter)
            if refused is None:
                recovery.finished.append(record)
                continue
            why, permanent = refused
            if not permanent:
                recovery.stuck.append((record, why))
                continue
            # Production refused a switch: undo it all, as the promoting process would have
            # (recorded first: if this pass dies too, the next one goes on undoing).
            record.committed_at = None
            record.error = f"interrupted after its commit, then production refused: {why}"
            promotions.save(record)
        _roll_back(promotions, record, settings, reporter)
        recovery.finished.append(record)
    return recovery


def _by(began: float) -> str:
    return (
        f"by {environment.owner()} (pid {os.getpid()} on {host_name()}) at "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC in {time.monotonic() - began:.2f}s"
    )


def _dead(record: PromotionRecord) -> str:
    return f"the promoting process (pid {record.pid} on {record.host})"


def _roll_forward(
    promotions: PromotionStore, record: PromotionRecord, settings: Settings, reporter: Reporter
) -> tuple[str, bool] | None:
    """Switch every item not switched yet, in the promotion's order. Returns None when
    done, else why not and whether that is production refusing (permanent)."""
    began = time.monotonic()
    items = sorted(
        (i for i in record.items if i.plan.action != "nothing" and i.state != "planned"),
        key=switch_order,
    )
    switched: list[str] = []
    before: list[str] = []
    for item in items:
        try:
            promoter = item_from_dict(item.item).promoter(settings, record.id, None, reporter)
        except Exception as exc:
            return _not_yet(promotions, record, item, exc, began), False
        try:
            if item.state != "switched" and promoter.is_switched(item):
                item.state = "switched"  # by the process that died, after its last record
            if item.state == "switched":
                before.append(item.plan.label)
                continue
            item.state = "switching"
            switch_began = time.monotonic()
            promoter.switch(item)
            item.seconds["switch"] = round(time.monotonic() - switch_began, 4)
            item.state = "switched"
            switched.append(item.plan.label)
            reporter.note(f"  switched {item.plan.label} -> {item.plan.target}")
        except PromotionFailed as exc:
            item.error = str(exc)
            return str(exc), True
        except Exception as exc:
            return _not_yet(promotions, record, item, exc, began), False
        finally:
            with contextlib.suppress(Exception):
                promoter.close()
    record.status = "succeeded"
    record.error = None
    record.finished_at = datetime.now(UTC)
    record.recovered = (
        f"{_dead(record)} ended after the commit (every item staged and verified); rolled "
        f"forward {_by(began)}: switched {', '.join(switched) or 'nothing'}"
        + (f" (switched before it ended: {', '.join(before)})" if before else "")
    )
    promotions.save(record)
    reporter.note(f"promotion {record.short_id} had been interrupted: {record.recovered}")
    return None


def _not_yet(
    promotions: PromotionStore,
    record: PromotionRecord,
    item: ItemRecord,
    exc: Exception,
    began: float,
) -> str:
    """Production could not be reached: the record stays committed, says so, and the
    next attempt tries again."""
    text = str(exc).strip()
    why = f"{item.plan.label}: {text.splitlines()[0] if text else type(exc).__name__}"
    record.recovered = f"rolling forward not finished yet ({why}); tried {_by(began)}"
    with contextlib.suppress(Exception):
        promotions.save(record)
    return why


def _roll_back(
    promotions: PromotionStore, record: PromotionRecord, settings: Settings, reporter: Reporter
) -> None:
    began = time.monotonic()
    reverted: list[str] = []
    removed: list[str] = []
    errors: list[str] = []
    for item in reversed(record.items):
        if item.state == "planned":
            continue
        try:
            promoter = item_from_dict(item.item).promoter(settings, record.id, None, reporter)
        except Exception as exc:
            errors.append(f"{item.plan.label}: {exc}")
            continue
        try:
            if item.state == "switched" or (
                item.state == "switching" and promoter.is_switched(item)
            ):
                promoter.unswitch(item)
                item.state = "reverted"
                reverted.append(item.plan.label)
            removed += promoter.discard_staging(item) or []
            if item.state != "reverted":
                item.state = "failed"
        except Exception as exc:
            errors.append(f"{item.plan.label}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                promoter.close()
    record.status = "failed"
    record.finished_at = datetime.now(UTC)
    record.error = record.error or (
        f"interrupted: {_dead(record)} ended before every item was staged and verified"
    )
    done = []
    if reverted:
        done.append(f"switched back {', '.join(reverted)}")
    done.append(f"removed {', '.join(removed)}" if removed else "no staged copy to remove")
    record.recovered = f"undone {_by(began)}: {'; '.join(done)}" + (
        f"; UNDO FAILED for {'; '.join(errors)}" if errors else ""
    )
    promotions.save(record)
    reporter.note(
        f"promotion {record.short_id} had been interrupted: {record.error}; {record.recovered}"
    )


@contextlib.contextmanager
def locked(settings: Settings, reporter: Reporter) -> Iterator[PromotionStore]:
    """The promotions of the tracking store, under the promotion lock, interrupted ones
    finished first: where every promotion, rollback and prune works."""
    with TrackingStore.open(settings) as store:
        promotions = PromotionStore(store)
        with promotions.lock(reporter):
            reconcile(promotions, settings, reporter).raise_if_stuck()
            yield promotions


def recover(settings: Settings, reporter: Reporter) -> Recovery:
    """``omnilab promotions recover``: wait for the lock, finish what was interrupted."""
    with TrackingStore.open(settings) as store:
        promotions = PromotionStore(store)
        with promotions.lock(reporter):
            return reconcile(promotions, settings, reporter)


def recover_if_free(store: TrackingStore, settings: Settings) -> Recovery:
    """For the reconcilers of the API and the workers, every few seconds: finish the
    interrupted promotions, if any is recorded as running and no promotion holds the
    lock; never waits (one index lookup when there is nothing to do)."""
    promotions = PromotionStore(store)
    if not promotions.any_running():
        return Recovery()
    with promotions.lock_if_free() as got:
        if not got:
            return Recovery()
        return reconcile(promotions, settings, QuietReporter())
