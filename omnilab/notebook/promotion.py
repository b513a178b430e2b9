"""The HTML a promotion plan or outcome shows as in a notebook.

A dry run is the moment a researcher decides whether to touch production, so the plan
reads like the CLI's: per item, what happens (create, replace, version, nothing,
conflict), from where to where, how much, and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnilab.notebook.html import CSS, badge, cell, esc, seconds, size

if TYPE_CHECKING:
    from omnilab.promote.models import PromotionResult

_ACTION_COLORS = {
    "create": "#1a7f37",
    "replace": "#9a6700",
    "version": "#0969da",
    "nothing": "#6e7781",
    "conflict": "#cf222e",
    "incompatible": "#cf222e",
}
_HEAD = ("action", "service", "source", "target", "run has", "prod. has", "size")


def promotion_html(result: PromotionResult) -> str:
    if result.dry_run:
        title = "promotion plan"
        facts = f"on conflict: {result.on_conflict} · dry run: nothing changed"
    else:
        title = f"promotion {result.id[:8]}" if result.id else "promotion"
        facts = f"on conflict: {result.on_conflict} · {seconds(result.seconds)}"
    rows, notes = [], []
    for item in result.items:
        plan = item.plan
        color = _ACTION_COLORS.get(plan.action, "#6e7781")
        rows.append(
            f'<tr><td style="color:{color};font-weight:600">{esc(plan.action)}</td>'
            + cell(plan.service)
            + cell(plan.source)
            + cell(plan.target)
            + cell(f"{plan.source_count:,} {plan.unit}")
            + cell(None if plan.target_count is None else f"{plan.target_count:,}")
            + cell(None if plan.size_bytes is None else size(plan.size_bytes))
            + "</tr>"
        )
        errors = [item.error] if item.error and item.error != result.error else []
        for text in ([plan.reason] if plan.reason else []) + plan.notes + errors:
            if text:
                notes.append(f"<li>{esc(plan.label)}: {esc(text)}</li>")
    head = "".join(f"<th>{name}</th>" for name in _HEAD)
    table = f"<table><tr>{head}</tr>{''.join(rows)}</table>" if rows else "(nothing declared)"
    where = sorted({f"{i.plan.service} {i.plan.target_url}" for i in result.items})
    extra = []
    if where:
        extra.append(f'<div class="ol-muted">production: {esc(", ".join(where))}</div>')
    if notes:
        extra.append(f"<ul>{''.join(notes)}</ul>")
    if result.error and not result.refused_items:
        extra.append(f'<div style="color:#cf222e">error: {esc(result.error)}</div>')
    if result.id and not result.dry_run and result.status == "succeeded":
        extra.append(
            f'<div class="ol-muted">undo with: omnilab rollback {esc(result.id[:8])}</div>'
        )
    return (
        f'{CSS}<div class="omnilab"><div class="ol-head">'
        f'<span class="ol-title">{esc(title)}</span>'
        f"<code>{esc(result.run_id[:8])}</code>{badge(result.status)}"
        f'<span class="ol-muted">{esc(result.experiment)} · {esc(facts)}</span></div>'
        f"{table}{''.join(extra)}</div>"
    )
