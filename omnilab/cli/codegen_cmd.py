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
    # The folder is said once, above: a line per template stays short at any width.
    if found.user_dir is not None:
        render.out.print(f"yours: {found.user_dir}", markup=False, soft_wrap=False)
    names = found.names()
    width = max([len(n) for n in names] + [8])
    for name in names:
        if found.path(name).parent == SHIPPED_DIR:
            origin = "shipped"
        elif (SHIPPED_DIR / f"{name}.j2").exists():
            origin = "yours (in place of the shipped one)"
        else:
            origin = "yours"
        render.out.print(f"{name:{width}s}  {origin}", markup=False)
