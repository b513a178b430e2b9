"""``omnilab doctor``: check this machine for what omnilab needs."""

from __future__ import annotations

import typer
from rich.markup import escape

from omnilab.cli import render

_STYLE = {"ok": "green", "warn": "yellow", "problem": "red"}


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
        width = max(len(c.name) for c in checks)
        for c in checks:
            line = f"[{_STYLE[c.status]}]{c.status:7s}[/] {c.name:{width}s}  {escape(c.detail)}"
            if c.hint:
                line += f"\n{'':8s} {'':{width}s}  [dim]hint: {escape(c.hint)}[/]"
            render.out.print(line)
    bad = {"problem", "warn"} if strict else {"problem"}
    if any(c.status in bad for c in checks):
        raise typer.Exit(1)
