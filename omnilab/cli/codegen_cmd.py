"""``omnilab codegen``: the prompt templates code generation renders."""

from __future__ import annotations

from pathlib import Path

import typer

from omnilab.cli import render

app = typer.Typer(help="Code generation: prompt templates.", no_args_is_help=True)


@app.command("templates")
def templates(
    show: str = typer.Argument(None, metavar="[NAME]", help="Print this template's source."),
    folder: Path = typer.Option(
        None,
        "--dir",
        help="Your templates folder (default: OMNILAB_TEMPLATES_DIR); its templates win "
        "over shipped ones of the same name.",
        show_default=False,
    ),
) -> None:
    """List the prompt templates (shipped and yours), or print one.

    Templates are jinja2 files named NAME.j2; a task picks one with template="NAME".

    Examples:

      omnilab codegen templates

      omnilab codegen templates solve

      omnilab codegen templates --dir prompts/ solve
    """
    from omnilab.workloads.prompts import SHIPPED_DIR, PromptTemplates
    from omnilab.workloads.settings import get_workload_settings

    found = PromptTemplates(folder or get_workload_settings().templates_dir)
    if show:
        render.out.print(found.path(show).read_text(encoding="utf-8"), end="", markup=False)
        return
    for name in found.names():
        path = found.path(name)
        origin = "shipped" if path.parent == SHIPPED_DIR else str(path)
        render.out.print(f"{name:16s} {origin}", markup=False)
