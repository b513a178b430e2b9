"""``omnilab doctor``: check this machine for what omnilab needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from omnilab.cli import render

if TYPE_CHECKING:
    from omnilab.checks import Check

_STYLE = {"ok": "green", "warn": "yellow", "problem": "red"}


def _table(checks: list[Check]) -> Table:
    """One row per check: status, name, then its detail and hint, which wrap within the
    terminal's width (a path or a URL folds) so that no line runs past the edge."""
    table = Table(box=None, padding=(0, 1, 0, 0), show_header=False, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold", ratio=1)
    for c in checks:
        detail = escape(c.detail)
        if c.hint:
            detail += f"\n[dim]hint: {escape(c.hint)}[/]"
        table.add_row(f"[{_STYLE[c.status]}]{c.status}[/]", escape(c.name), detail)
    return table


def doctor(
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero on warnings too."),
) -> None:
    """Check what runs need here, one line each, with a hint when something is off.

    The Docker engine, images, GPUs, ports, local servers, the tracking store and the
    production services (these matter to `omnilab promote` only).

    Exit status: 0 when everything a run needs works (warnings allowed), 1 when
    something is broken (or, with --strict, when anything is not ok).

    Examples:

      omnilab doctor

      omnilab doctor --json | jq '.[] | select(.status != "ok")'
    """
    from omnilab.config import get_settings
    from omnilab.doctor import run_checks

    checks = run_checks(get_settings())
    if json_output:
        render.print_json([c.to_dict() for c in checks])
    else:
        render.out.print(_table(checks))
    bad = {"problem", "warn"} if strict else {"problem"}
    if any(c.status in bad for c in checks):
        raise typer.Exit(1)
