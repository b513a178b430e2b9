"""The HTML a promotion plan or outcome shows as in a notebook.

A dry run is the moment a researcher decides whether to touch production, so the plan
reads like the CLI's: per item, what happens (create, replace, version, nothing,
conflict), from where to where, how much, and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnilab.notebook.html import CSS, badge, cell, esc, seconds, size

if TYPE_CHECKING:
    from omnilab.promote.models import PromotionResult, RunDiff

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
        diffed = plan.diff.notes if plan.diff else []  # how the diff was computed
        for text in ([plan.reason] if plan.reason else []) + plan.notes + diffed + errors:
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


_DIFF_HEAD = ("item", "by", "added", "changed", "removed", "examples", "since the fork")


def diff_html(diff: RunDiff) -> str:
    """``run.diff()``: per item, the counts of rows, keys or points added, changed and
    removed against production, a few examples of each, and the fork check."""
    rows = []
    for row in diff.rows():
        shown = []
        for kind, sign in (("added", "+"), ("changed", "~"), ("removed", "-")):
            names = row[f"{kind}_examples"]
            if names:
                shown.append(f"{sign} " + ", ".join(map(str, names)))  # type: ignore[call-overload]
        if not row["forked"]:
            since = "not forked"
        elif row["changed_since_fork"]:
            since = "changed"
        else:
            since = "unchanged"
        color = "#cf222e" if since == "changed" else "inherit"
        rows.append(
            "<tr>"
            + cell(row["item"])
            + cell(row["by"])
            + f'<td style="color:#1a7f37">{esc(_count(row["added"]))}</td>'
            + f'<td style="color:#9a6700">{esc(_count(row["changed"]))}</td>'
            + f'<td style="color:#cf222e">{esc(_count(row["removed"]))}</td>'
            + cell("; ".join(shown) if shown else "(identical)")
            + f'<td style="color:{color}">{esc(since)}</td>'
            + "</tr>"
        )
    head = "".join(f"<th>{name}</th>" for name in _DIFF_HEAD)
    table = f"<table><tr>{head}</tr>{''.join(rows)}</table>" if rows else "(nothing declared)"
    return (
        f'{CSS}<div class="omnilab"><div class="ol-head">'
        f'<span class="ol-title">diff against production</span>'
        f"<code>{esc(diff.run_id[:8])}</code>"
        f'<span class="ol-muted">{esc(diff.experiment)} · nothing changed</span></div>'
        f"{table}</div>"
    )


def _count(value: object) -> str:
    return "-" if value is None else f"{value:,}"
