"""Plans, promotion outcomes and promotion lists for the terminal."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from omnilab.cli.render import out, run_label, seconds, when
from omnilab.procs import owner_alive
from omnilab.promote.models import PromotionResult, RollbackResult
from omnilab.promote.records import PromotionRecord
from omnilab.services.promotable import ItemPlan, ItemRecord

ACTION_STYLE = {
    "create": "green",
    "replace": "yellow",
    "version": "cyan",
    "nothing": "dim",
    "conflict": "red",
    "incompatible": "red",
}
STATUS_STYLE = {
    "succeeded": "green",
    "planned": "cyan",
    "nothing_to_do": "dim",
    "failed": "red",
    "refused": "red",
    "declined": "yellow",
    "rolled_back": "yellow",
    "running": "cyan",
    "interrupted": "red",
}


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{value} B"


def fingerprint(checksum: dict[str, Any] | None) -> str:
    """A short, comparable form of a recorded checksum (full ones: ``--json``)."""
    if not checksum:
        return "-"
    text = json.dumps(checksum, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _action(plan: ItemPlan) -> str:
    return f"[{ACTION_STYLE.get(plan.action, 'white')}]{plan.action}[/]"


def _styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status.replace('_', ' ')}[/]"


def _indented(table: Table) -> Padding:
    """A table two columns in, as a whole: a cell that wraps on a narrow terminal keeps
    its indent (a leading "  " in the first cell would not)."""
    return Padding(table, (0, 0, 0, 2))


def plan_table(items: list[ItemRecord]) -> Padding:
    """One line per item: what happens, from where to where, how much (cells wrap within
    the terminal's width)."""
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold", pad_edge=False)
    table.add_column("action")
    for name in ("service", "source", "target"):
        table.add_column(name)
    for name in ("run has", "prod. has", "size"):
        table.add_column(name, justify="right")
    for item in items:
        plan = item.plan
        table.add_row(
            _action(plan),
            escape(plan.service),
            escape(plan.source),
            escape(plan.target),
            f"{plan.source_count:,} {plan.unit}",
            "-" if plan.target_count is None else f"{plan.target_count:,}",
            size(plan.size_bytes),
        )
    return _indented(table)


def diff_table(items: list[ItemRecord]) -> Padding:
    """Per item, what the run adds, changes and removes against production, with a few
    examples of each (the examples wrap within the terminal's width)."""
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold", pad_edge=False)
    table.add_column("diff", overflow="fold")
    table.add_column("by")
    for name in ("added", "changed", "removed"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("examples", ratio=1, overflow="fold")
    for item in items:
        diff = item.plan.diff
        if diff is None:
            continue
        shown = []
        for kind, sign in (("added", "+"), ("changed", "~"), ("removed", "-")):
            names = diff.examples.get(kind) or []
            if names:
                more = getattr(diff, kind) - len(names)
                shown.append(
                    f"{sign} " + ", ".join(names) + (f" (+{more:,} more)" if more > 0 else "")
                )
        table.add_row(
            escape(item.plan.label),
            diff.by,
            f"[green]{diff.added:,}[/]",
            f"[yellow]{diff.changed:,}[/]",
            f"[red]{diff.removed:,}[/]",
            escape("; ".join(shown)) if shown else "(identical)",
        )
    return _indented(table)


def since_fork_line(plan: ItemPlan) -> str | None:
    """Whether production changed since the fork, for an item the run was forked from."""
    since = plan.since_fork
    if since is None:
        return None
    if since.changed:
        return f"[red]{escape(since.what)}[/] ({since.decision})"
    return f"production unchanged since the fork ({since.decision})"


def _said(markup: str, indent: int = 0) -> None:
    """A line of prose wrapped within the terminal's width, its continuation lines under
    its first one (the console leaves lines unwrapped otherwise)."""
    text = Text.from_markup(markup)
    out.print(Padding(text, (0, 0, 0, indent)) if indent else text, soft_wrap=False)


def _explain(items: list[ItemRecord], error: str | None = None) -> None:
    """Each item's reason, notes and error; an item's error that is the promotion's own
    ``error`` is left to whoever prints that (once, on stderr)."""
    for item in items:
        plan = item.plan
        label = escape(plan.label)
        forked = since_fork_line(plan)
        if forked:
            _said(f"{label}: {forked}", 4)
        if plan.reason:
            style = "red" if plan.action in ("conflict", "incompatible") else "default"
            _said(f"[{style}]{label}: {escape(plan.reason)}[/]", 4)
        for note in plan.notes:
            _said(f"[yellow]note[/] {label}: {escape(note)}", 4)
        for note in plan.diff.notes if plan.diff else []:
            # How the diff was computed (since the fork; whole rows without a key).
            _said(f"[dim]diff[/] {label}: {escape(note)}", 4)
        if item.error and not (error and item.error in error):
            _said(f"[red]{label}: {escape(item.error)}[/]", 4)


def promotion_result(result: PromotionResult) -> None:
    where = ", ".join(sorted({f"{i.plan.service} {i.plan.target_url}" for i in result.items}))
    head = run_label(result.run_id, result.experiment, result.run_name)
    if result.dry_run:
        _said(f"plan for {head}, dry run: nothing changed; on conflict: {result.on_conflict}")
    else:
        ident = f"promotion [bold]{result.id[:8]}[/] of " if result.id else ""
        _said(f"{ident}{head}: {_styled(result.status)} in {seconds(result.seconds)}")
    if result.items:
        line = Table.grid(padding=(0, 1))
        line.add_column(no_wrap=True)
        line.add_column(overflow="fold")  # one URL a line when they do not fit one
        if len(where) + 14 > out.width:
            where = where.replace(", ", "\n")
        line.add_row("  production:", escape(where))
        out.print(line)
        out.print(plan_table(result.items))
        if any(i.plan.diff is not None for i in result.items):
            out.print(diff_table(result.items))
        _explain(result.items, result.error)
    done = [i for i in result.items if i.state == "switched"]
    if done and result.id:
        out.print(outcome_table(done))
        out.print(f"  undo with: omnilab rollback {result.id[:8]}")
    if result.data == "released":
        out.print("  the run's stack data was released")
    if result.dry_run and result.refused_items:
        n = len(result.refused_items)
        _said(
            f"[red]the promotion would be refused[/]: {n} item{'s' if n != 1 else ''} above "
            "say why and what to do; nothing is copied until then"
        )
    # The error itself is printed once, by the caller, on stderr.


def error_line(result: PromotionResult) -> str:
    """The one error line of a promotion that did not go through, once its plan is shown:
    items refused in the plan are named (their reasons and fixes are in the plan), any
    other error is given in full."""
    refused = result.refused_items
    if not refused:
        return f"promotion {result.status}: {result.error or 'no reason recorded'}"
    labels = ", ".join(i.plan.label for i in refused)
    changed = [
        i.plan.since_fork.what
        for i in refused
        if i.plan.since_fork is not None and i.plan.since_fork.decision == "refused"
    ]
    if changed:
        # As git refuses a push that is no fast-forward: say what moved meanwhile.
        return (
            f"promotion refused, nothing copied: {'; '.join(changed)}; "
            "use --on-conflict replace or version to promote regardless"
        )
    if all(i.plan.action == "conflict" for i in refused):
        fix = "use --on-conflict replace or version"
    else:
        fix = "production cannot accept it as it is; the fix is given above"
    return f"promotion refused, nothing copied: {labels} (see above); {fix}"


def outcome_table(items: list[ItemRecord]) -> Padding:
    """What each switched item received, its checksum, and where the replaced data is."""
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold", pad_edge=False)
    for name in ("target", "copied", "checksum", "verified", "replaced, kept as"):
        table.add_column(name, overflow="fold")
    for item in items:
        source = item.checksums.get("source")
        target = item.checksums.get("target")
        table.add_row(
            escape(item.plan.target),
            f"{item.counts.get('target', 0):,} {item.plan.unit}",
            fingerprint(target),
            "yes" if source is not None and _same(source, target) else "[red]no[/]",
            escape(_replaced(item) or "-"),
        )
    return _indented(table)


def _same(source: dict[str, Any], target: dict[str, Any] | None) -> bool:
    # Qdrant vectors may differ by float32 rounding (compared point by point instead).
    if target is None:
        return False
    keys = set(source) - {"vectors_sum"}
    return all(source.get(k) == target.get(k) for k in keys)


def _replaced(item: ItemRecord) -> str | None:
    switch = item.switch
    if switch.get("replaced_prefix"):
        return f"{switch['replaced_prefix']}* ({switch.get('replaced_keys', 0):,} keys)"
    return switch.get("replaced")


def status_of(record: PromotionRecord) -> str:
    if record.status == "running" and not owner_alive(record.pid or 0, record.pid_start):
        return "interrupted"
    return record.status


def promotions_listing(records: list[PromotionRecord]) -> None:
    """Each promotion (run, status, when, who), then its items: target, action, count,
    checksum of what production received."""
    for record in records:
        out.print(
            f"[bold]{record.short_id}[/]  "
            f"{run_label(record.run_id, record.experiment, record.run_name)}  "
            f"{_styled(status_of(record))}  {when(record.created_at)}  by {record.actor}"
        )
        table = Table(box=None, padding=(0, 2, 0, 0), show_header=False, pad_edge=False)
        for _ in range(5):
            table.add_column(no_wrap=True)
        for item in record.items:
            plan = item.plan
            state = "" if item.state == "switched" else f" ({item.state})"
            count = item.counts.get("target", plan.source_count)
            table.add_row(
                f"  {plan.service}",
                f"{plan.target}",
                f"{_action(plan)}{state}",
                f"{count:,} {plan.unit}",
                f"checksum {fingerprint(item.checksums.get('target'))}",
            )
        out.print(table)


def promotion_details(record: PromotionRecord) -> None:
    out.print(f"promotion [bold]{record.id}[/]  {_styled(status_of(record))}")
    rows = {
        "run": f"{record.run_id}"
        + (f' "{escape(record.run_name)}"' if record.run_name else "")
        + f" ({escape(record.experiment or '-')})",
        "by": record.actor,
        "on conflict": record.on_conflict,
        "started": when(record.created_at),
        "finished": when(record.finished_at),
    }
    if record.committed_at:
        rows["committed"] = f"{when(record.committed_at)} (every item staged and verified)"
    if record.rolled_back_at:
        rows["rolled back"] = f"{when(record.rolled_back_at)} by {record.rolled_back_by}"
    if record.pruned_at:
        rows["pruned"] = f"{when(record.pruned_at)} (replaced data deleted; no rollback)"
    for key, value in rows.items():
        out.print(f"  [bold]{key:12s}[/] {value}")
    out.print(plan_table(record.items))
    _explain(record.items, record.error)
    done = [i for i in record.items if i.state in ("switched", "rolled_back")]
    if done:
        out.print(outcome_table(done))
    if record.error:
        out.print(f"[red]error:[/] {escape(record.error)}")
    if record.recovered:
        out.print(f"[yellow]recovered:[/] {escape(record.recovered)}")


def rollback_result(result: RollbackResult) -> None:
    would = "would " if result.dry_run else ""
    out.print(
        f"rollback of promotion [bold]{result.promotion_id[:8]}[/] "
        f"({run_label(result.run_id, result.experiment, result.run_name)}): "
        f"{_styled(result.status)}"
    )
    for item in result.items:
        removed = "remove" if result.dry_run else "removed"
        restored = "restore" if result.dry_run else "restored"
        line = f"  {item['target']}: {would}{removed} {item['removes']}"
        if item["restores"]:
            line += f"; {restored} {item['restores']}"
        out.print(line)
