"""The ``omnilab`` command.

Every command's errors that a user can fix print one line (``error: ...``) and exit
with status 2 for bad input; an experiment that raised exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import sys
import traceback
from enum import StrEnum
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from omnilab.cli import (
    aer_cmd,
    apikey_cmd,
    cache_cmd,
    codegen_cmd,
    compose_cmd,
    config_cmd,
    doctor_cmd,
    gc_cmd,
    images_cmd,
    promote_cmd,
    render,
    runs_cmd,
    serve_cmd,
    stack_cmd,
    ui_cmd,
    worker_cmd,
    workers_cmd,
)
from omnilab.errors import OmnilabError, RunNotFound
from omnilab.version import __version__

#: ``omnilab --help``'s headings, and the commands under each in the order shown (the
#: first things a user does first). A command missing here goes under "Other".
PANELS: dict[str, tuple[str, ...]] = {
    "Run experiments": ("run", "runs", "ui"),
    "Stacks": ("stack", "compose", "images"),
    "Promotion": ("promote", "promotions", "rollback", "discard"),
    "HTTP API": ("serve", "worker", "workers", "api-key"),
    "Workloads": ("codegen", "aer"),
    "Maintenance": ("doctor", "config", "gc", "cache"),
}


class GroupedCommands(TyperGroup):
    """Lists the top-level commands in ``PANELS``' order, under its headings."""

    def list_commands(self, ctx: Any) -> list[str]:
        order = [name for names in PANELS.values() for name in names]
        known = [name for name in order if name in self.commands]
        return known + sorted(set(self.commands) - set(order))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        panel_of = {name: panel for panel, names in PANELS.items() for name in names}
        for name, command in self.commands.items():
            command.rich_help_panel = panel_of.get(name, "Other")  # type: ignore[attr-defined]
        super().format_help(ctx, formatter)


app = typer.Typer(
    name="omnilab",
    cls=GroupedCommands,
    help=(
        "Run experiments on private, throwaway stacks "
        f"({', '.join(render.service_names())}) next to production, and track every run.\n\n"
        "Start with:  omnilab run experiments/hello.py"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(stack_cmd.app, name="stack")
app.add_typer(aer_cmd.app, name="aer")
app.add_typer(codegen_cmd.app, name="codegen")
app.add_typer(images_cmd.app, name="images")
app.add_typer(compose_cmd.app, name="compose")
app.command("gc")(gc_cmd.gc)
app.add_typer(cache_cmd.app, name="cache")
app.command("doctor")(doctor_cmd.doctor)
app.command("config")(config_cmd.config)
app.command("worker")(worker_cmd.worker)
app.command("workers")(workers_cmd.workers)
app.command("serve")(serve_cmd.serve)
app.command("ui")(ui_cmd.ui)
app.add_typer(apikey_cmd.app, name="api-key")
app.command("promote")(promote_cmd.promote)
app.command("rollback")(promote_cmd.rollback)
app.command("discard")(promote_cmd.discard)
app.add_typer(promote_cmd.promotions_app, name="promotions")


class IsolationChoice(StrEnum):
    host = "host"
    container = "container"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"omnilab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run experiments on private stacks next to production, and track every run."""


#: ``--runtime``'s help, made from the registered runtimes.
RUNTIME_HELP = render.runtime_help()


@app.command("run")
def run_command(
    target: str = typer.Argument(
        ...,
        metavar="FILE[:CLASS]",
        help="Experiment file, e.g. experiments/hello.py; add :ClassName when it holds several.",
    ),
    param: list[str] = typer.Option(
        [],
        "-p",
        "--param",
        metavar="KEY=VALUE",
        help="Set a parameter (repeatable). Values are validated by the experiment's Params; "
        "lists and dicts as JSON: -p sizes='[1,2,3]'.",
    ),
    runtime: render.RuntimeChoice = typer.Option(
        None,
        "--runtime",
        "-r",
        help=RUNTIME_HELP,
        show_default=False,
    ),
    keep: bool = typer.Option(
        False, "--keep", help="Leave the stack running afterwards and print how to reach it."
    ),
    isolation: IsolationChoice = typer.Option(
        None,
        "--isolation",
        help="Where the experiment's code runs: host (this process) or container (the "
        "experiments image, on the run's network; needs the docker runtime). "
        "Default: the experiment's own `isolation` (host unless it says otherwise).",
        show_default=False,
    ),
    gpu: bool = typer.Option(
        None,
        "--gpu/--no-gpu",
        help="Require GPUs, or refuse them. Default: the experiment's own `gpu` setting.",
        show_default=False,
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print the run as JSON on stdout (progress stays on stderr)."
    ),
    promote: bool = typer.Option(
        False,
        "--promote",
        help="When the run succeeds and the experiment's accept(summary) agrees, promote "
        "what it declares in `promotes` into production (see `omnilab promote --help`).",
    ),
    on_conflict: promote_cmd.OnConflict = typer.Option(
        promote_cmd.OnConflict.fail,
        "--on-conflict",
        help="With --promote: " + promote_cmd.ON_CONFLICT_HELP,
    ),
    name: str = typer.Option(
        None, "--name", help="A name for the run, shown wherever it is.", show_default=False
    ),
    tag: list[str] = typer.Option(
        [], "--tag", "-t", help="A tag (repeatable), to find the run by: runs ls --tag T."
    ),
    no_seed: bool = typer.Option(
        False,
        "--no-seed",
        help="Start on an empty stack: skip copying the experiment's `seeds` from "
        "production (see docs/fork.md).",
    ),
) -> None:
    """Run an experiment on a private stack, record it, tear the stack down.

    Examples:

      omnilab run experiments/hello.py

      omnilab run experiments/hello.py -p n_items=1000 --runtime local

      omnilab run experiments/hello.py --runtime docker --isolation container

      omnilab run experiments/hello.py:Hello --keep

      omnilab run experiments/hello.py --name baseline --tag sweep-1 --tag small

      omnilab run experiments/promote_demo.py --promote

      omnilab run experiments/fork_demo.py --no-seed
    """
    from omnilab.params import parse_assignments
    from omnilab.runner import RunOptions, Terminated, run_with

    values = parse_assignments(param)
    try:
        options = RunOptions(
            runtime=str(runtime) if runtime else None,
            keep=keep,
            gpu=gpu,
            promote=promote,
            on_conflict=on_conflict.value,
            isolation=isolation.value if isolation else None,
            name=name,
            tags=tuple(tag),
            fork=not no_seed,
            from_cli=True,
            reporter=render.progress_reporter(json_output),
        )
        with render.stdout_for_json_only(json_output):
            result = run_with(target, values, options)
    except KeyboardInterrupt:
        render.err.print("cancelled: the stack was removed and the run recorded as cancelled")
        raise typer.Exit(130) from None
    except Terminated:
        render.err.print("terminated: the stack was removed and the run recorded as cancelled")
        raise typer.Exit(143) from None
    if json_output:
        data = result.to_dict()
        if result.promotion is not None:
            data["promotion"] = result.promotion.model_dump(mode="json")
        render.print_json(data)
    else:
        render.run_result(result)
    if not result.ok:
        raise typer.Exit(1)
    raise typer.Exit(promote_cmd.promotion_after_run(result, json_output))


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn omnilab's and the parser's errors into an exit status."""
    try:
        code = app(args=argv, prog_name="omnilab", standalone_mode=False)
    except OmnilabError as exc:
        from omnilab.redact import redact_environment

        # Messages mask what they show already; this is the net under them.
        render.err.print(f"[red]error:[/] {escape(redact_environment(str(exc)))}")
        if isinstance(exc, RunNotFound):
            render.runs_elsewhere()
        sys.exit(exc.exit_code)
    except typer.Abort:
        render.err.print("cancelled")
        sys.exit(130)
    except Exception as exc:
        # The command-line parser's own errors (unknown option, missing argument):
        # they know how to show themselves and carry exit status 2.
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        # omnilab's own failure: its traceback, less any secret a message quotes.
        from omnilab.redact import redact_environment

        sys.stderr.write(redact_environment("".join(traceback.format_exception(exc))))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
