"""Finishing promotions whose process died (SIGKILL, a crash, a lost machine).

A promotion records each item's progress before and after each step. Any promotion still
``running`` when someone else holds the promotion lock has lost its process (a running
promotion holds the lock until it ends), so its switched items are switched back and its
staged copies removed: production ends as it was before that promotion began.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from omnilab.promote.items import item_from_dict, other_production
from omnilab.promote.records import PromotionStore
from omnilab.tracking.store import TrackingStore

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.progress import Reporter


def reconcile(promotions: PromotionStore, settings: Settings, reporter: Reporter) -> int:
    """Undo every interrupted promotion (call with the promotion lock held)."""
    fixed = 0
    for record in promotions.running():
        elsewhere = other_production(record.items, settings)
        if elsewhere:
            reporter.note(
                f"promotion {record.short_id} was interrupted while promoting into "
                f"{', '.join(elsewhere)}, not the production configured here; run a promotion "
                "with that configuration to undo it"
            )
            continue
        reverted, errors = 0, []
        for item in reversed(record.items):
            promoter = item_from_dict(item.item).promoter(settings, record.id, None, reporter)
            try:
                if item.state == "switched" or (
                    item.state == "switching" and promoter.is_switched(item)
                ):
                    promoter.unswitch(item)
                    item.state = "reverted"
                    reverted += 1
                if item.state in ("staging", "staged", "switching", "reverted"):
                    promoter.discard_staging(item)
                if item.state != "reverted" and item.state != "planned":
                    item.state = "failed"
            except Exception as exc:
                errors.append(f"{item.plan.label}: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    promoter.close()
        record.status = "failed"
        record.finished_at = datetime.now(UTC)
        record.error = (
            f"interrupted: the promoting process (pid {record.pid} on {record.host}) ended "
            f"without finishing; {reverted} switched items switched back, staged copies removed"
            + (f"; UNDO FAILED for {'; '.join(errors)}" if errors else "")
        )
        promotions.save(record)
        reporter.note(f"promotion {record.short_id} had been interrupted: {record.error}")
        fixed += 1
    return fixed


@contextlib.contextmanager
def locked(settings: Settings, reporter: Reporter) -> Iterator[PromotionStore]:
    """The promotions of the tracking store, under the promotion lock, interrupted ones
    undone first: where every promotion, rollback and prune works."""
    with TrackingStore.open(settings) as store:
        promotions = PromotionStore(store)
        with promotions.lock(reporter):
            reconcile(promotions, settings, reporter)
            yield promotions
