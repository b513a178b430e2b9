"""``omnilab gc``: remove what dead stacks left behind."""

from __future__ import annotations

import typer

from omnilab.cli import render


def gc(
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only list what would be removed."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Remove stacks, containers, networks and volumes whose owning process is gone.

    Kept stacks are left alone (`omnilab stack down ID` removes them), as is the volume
    that stacks share for Ollama's models. Normally each stack's watcher removes it
    within a second of its owner's death; gc is for what it could not (a reboot, an
    engine that was down, older versions). With OMNILAB_LABELS set, only objects
    carrying those labels are considered.

    Examples:

      omnilab gc --dry-run

      omnilab gc
    """
    from omnilab.config import get_settings
    from omnilab.gc import collect

    found, skipped = collect(get_settings(), dry_run=dry_run)
    if json_output:
        render.print_json(
            {"dry_run": dry_run, "leftovers": [f.to_dict() for f in found], "skipped": skipped}
        )
        return
    if skipped:
        render.err.print(skipped)
    if not found:
        render.err.print("nothing to remove")
        return
    for item in found:
        what = f"{item.kind} {item.name}"
        stack = f" (stack {item.stack[:12]})" if item.stack and item.kind != "stack" else ""
        if dry_run:
            render.out.print(f"would remove {what}{stack}: {item.why}")
        elif item.removed:
            render.out.print(f"removed {what}{stack}: {item.why}")
        else:
            render.out.print(f"[red]could not remove[/] {what}{stack}: {item.error}")
    failed = [f for f in found if not dry_run and not f.removed]
    if failed:
        raise typer.Exit(1)
