"""``omnilab rollback PROMOTION``: put back what a promotion replaced.

Each item is switched back atomically (the alias back on the collection it replaced, the
kept keys renamed back in one MULTI/EXEC, the kept table moved back in one transaction),
and what the promotion created is removed. Refused when production changed since the
promotion (its checksum is no longer the recorded one: someone wrote to it) unless
``force``, and when a later promotion replaced the same item (roll that one back first).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from omnilab import environment
from omnilab.config import Settings, get_settings
from omnilab.errors import UsageError
from omnilab.progress import Reporter
from omnilab.promote.items import item_from_dict, other_production
from omnilab.promote.models import RollbackResult
from omnilab.promote.records import PromotionRecord, PromotionStore
from omnilab.promote.recovery import locked
from omnilab.services.promotable import ItemRecord, PromotionFailed


def rollback(
    promotion: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    actor: str | None = None,
    settings: Settings | None = None,
    reporter: Reporter | None = None,
) -> RollbackResult:
    """Undo a succeeded promotion; see the module's docstring for when it is refused."""
    settings = settings or get_settings()
    reporter = reporter or Reporter()
    with locked(settings, reporter) as promotions:
        record = promotions.get(promotion)
        _check(promotions, record)
        items = [i for i in record.items if i.state == "switched"]
        elsewhere = other_production(items, settings)
        if elsewhere:
            raise UsageError(
                f"promotion {record.short_id} went into {', '.join(elsewhere)}, not the "
                "production configured here (QDRANT_URL, REDIS_URL, POSTGRES_URL)"
            )
        plan = [_describe(i) for i in items]
        changed = [] if force else _changed(record, items, settings, reporter)
        if changed:
            raise UsageError(
                f"production changed since promotion {record.short_id}: "
                f"{'; '.join(changed)}; rolling back would discard those changes "
                "(use --force to do it anyway)"
            )
        if dry_run:
            return RollbackResult(
                promotion_id=record.id, run_id=record.run_id, dry_run=True,
                experiment=record.experiment, run_name=record.run_name,
                status="planned", items=plan,
            )  # fmt: skip
        return _carry_out(promotions, record, items, plan, actor, settings, reporter)


def _check(promotions: PromotionStore, record: PromotionRecord) -> None:
    if record.status == "rolled_back":
        raise UsageError(f"promotion {record.short_id} was already rolled back")
    if record.status != "succeeded":
        raise UsageError(
            f"promotion {record.short_id} {record.status}: it changed nothing to roll back"
        )
    if record.pruned_at is not None:
        raise UsageError(
            f"promotion {record.short_id}: the data it replaced was pruned; cannot roll back"
        )
    later = promotions.later_on_same_target(record)
    if later:
        ids = ", ".join(p.short_id for p in later)
        raise UsageError(
            f"promotion {record.short_id}: later promotions ({ids}) replaced the same items; "
            "roll those back first"
        )


def _describe(item: ItemRecord) -> dict[str, Any]:
    return {
        "item": item.plan.label,
        "target": item.plan.target,
        "restores": item.switch.get("replaced") or item.switch.get("replaced_prefix"),
        "removes": f"the {item.counts.get('target', 0):,} {item.plan.unit} it promoted",
        "service": item.plan.service,
        "state": item.state,
    }


def _changed(
    record: PromotionRecord, items: list[ItemRecord], settings: Settings, reporter: Reporter
) -> list[str]:
    changed = []
    for item in items:
        promoter = item_from_dict(item.item).promoter(settings, record.id, None, reporter)
        try:
            if promoter.target_checksum(item) != item.checksums.get("target"):
                changed.append(f"{item.plan.target} ({item.plan.label})")
        finally:
            promoter.close()
    return changed


def _carry_out(
    promotions: PromotionStore,
    record: PromotionRecord,
    items: list[ItemRecord],
    plan: list[dict[str, Any]],
    actor: str | None,
    settings: Settings,
    reporter: Reporter,
) -> RollbackResult:
    errors = []
    for item, described in zip(reversed(items), reversed(plan), strict=True):
        promoter = item_from_dict(item.item).promoter(settings, record.id, None, reporter)
        try:
            promoter.unswitch(item)
            item.state = "rolled_back"
            described["state"] = "rolled_back"
            reporter.note(f"  rolled back {item.plan.label} ({item.plan.target})")
        except Exception as exc:
            errors.append(f"{item.plan.label}: {exc}")
            described["error"] = str(exc)
        finally:
            with contextlib.suppress(Exception):
                promoter.close()
    if not errors:
        record.status = "rolled_back"
        record.rolled_back_at = datetime.now(UTC)
        record.rolled_back_by = actor or environment.owner()
    promotions.save(record)
    result = RollbackResult(
        promotion_id=record.id,
        run_id=record.run_id,
        experiment=record.experiment,
        run_name=record.run_name,
        status="partial" if errors else "rolled_back",
        items=plan,
        error="; ".join(errors) or None,
    )
    if errors:
        error = PromotionFailed(
            f"rollback of {record.short_id} incomplete ({'; '.join(errors)}); the items "
            "rolled back are recorded: run it again to finish"
        )
        error.result = result  # type: ignore[attr-defined]
        raise error
    return result


def prune(
    promotion: str, *, settings: Settings | None = None, reporter: Reporter | None = None
) -> PromotionRecord:
    """Delete the data a promotion replaced (kept for rollback); no rollback after this."""
    settings = settings or get_settings()
    reporter = reporter or Reporter()
    with locked(settings, reporter) as promotions:
        record = promotions.get(promotion)
        if record.status != "succeeded" or record.pruned_at is not None:
            raise UsageError(
                f"promotion {record.short_id} is {record.status}"
                f"{', already pruned' if record.pruned_at else ''}: nothing kept to prune"
            )
        elsewhere = other_production(record.items, settings)
        if elsewhere:
            raise UsageError(
                f"promotion {record.short_id} went into {', '.join(elsewhere)}, not the "
                "production configured here"
            )
        for item in record.items:
            if item.state != "switched":
                continue
            promoter = item_from_dict(item.item).promoter(settings, record.id, None, reporter)
            try:
                promoter.drop_replaced(item)
            finally:
                promoter.close()
        record.pruned_at = datetime.now(UTC)
        promotions.save(record)
        return record
