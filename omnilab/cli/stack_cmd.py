"""``omnilab stack``: ad-hoc stacks for interactive work, and kept stacks of runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from omnilab.cli import render

if TYPE_CHECKING:
    from omnilab.runtimes.state import StackState

app = typer.Typer(help="Start, list and remove stacks outside of runs.", no_args_is_help=True)


def _find(ref: str) -> StackState:
    from omnilab.config import get_settings
    from omnilab.errors import UsageError
    from omnilab.runtimes.state import all_states

    matches = [s for s in all_states(get_settings().state_dir) if s.id.startswith(ref)]
    if not matches:
        raise UsageError(f"no stack matches {ref!r} (see `omnilab stack ls`)")
    if len(matches) > 1:
        raise UsageError(f"{ref!r} matches several stacks; give more characters")
    return matches[0]


_SERVICES_HELP = (
    f"Services to start: {', '.join(render.service_names())} "
    f"(default: {' '.join(render.default_stack())})."
)


@app.command("up")
def up(
    services: list[str] = typer.Argument(
        None,
        metavar="[SERVICE]...",
        help=_SERVICES_HELP,
    ),
    runtime: render.RuntimeChoice = typer.Option(
        None,
        "--runtime",
        "-r",
        help="Where the stack runs (default: OMNILAB_RUNTIME or auto).",
        show_default=False,
    ),
    gpu: bool = typer.Option(None, "--gpu/--no-gpu", help="Require GPUs, or refuse them."),
) -> None:
    """Start a stack that stays up until `omnilab stack down ID`.

    Examples:

      omnilab stack up

      omnilab stack up redis postgres --runtime local

      eval "$(omnilab stack env 3fa2c1d8)"   # then: redis-cli -u "$REDIS_URL" ping
    """
    from omnilab.services import service_class
    from omnilab.stack import Stack

    names = services or render.default_stack()
    classes = [service_class(n) for n in names]  # an unknown name: one line, exit 2
    stack = Stack(
        *(cls() for cls in classes),
        runtime=str(runtime) if runtime else None,
        keep=True,
        gpu="auto" if gpu is None else gpu,
    )
    stack.start()
    stack.close()  # keep=True: closes clients, records the stack, leaves it running
    render.out.print(f'eval "$(omnilab stack env {stack.id[:12]})"   # to export its variables')
    render.out.print(f"# variables: {' '.join(stack.env)}")
    if stack.runtime is not None:
        running = [r.service for r in stack.services.values()]
        for line in stack.runtime.describe_stack(stack.id, running):
            render.out.print(f"# {line}")


@app.command("env")
def env(stack_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Print `export` lines (with credentials) for a kept stack, to give its
    REDIS_URL, POSTGRES_URL... to your shell or to programs.

    Examples:

      eval "$(omnilab stack env 3fa2c1d8)"

      omnilab stack env 3fa2c1d8 > stack.env
    """
    from omnilab.errors import UsageError
    from omnilab.runtimes.state import env_file

    state = _find(stack_id)
    assert state.path is not None
    path = env_file(state.path.parent, state.id)
    if not path.exists():
        raise UsageError(f"stack {state.id[:12]} has no saved credentials (not a kept stack)")
    typer.echo(path.read_text(), nl=False)


@app.command("ls")
def ls(json_output: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """List stacks: kept ones and those whose run is still going.

    Examples:

      omnilab stack ls

      omnilab stack ls --json
    """
    from omnilab.config import get_settings
    from omnilab.runtimes.state import all_states

    states = all_states(get_settings().state_dir)
    if json_output:
        render.print_json([{**s.to_dict(), "owner_alive": s.owner_is_alive()} for s in states])
        return
    if not states:
        render.err.print("no stacks")
        return
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    for name in ("id", "runtime", "state", "age", "run", "services"):
        table.add_column(name)
    now = time.time()
    for s in states:
        state = "kept" if s.keep else ("in use" if s.owner_is_alive() else "orphaned")
        urls = "  ".join(f"{k}={v}" for k, v in s.urls.items())
        table.add_row(
            s.id[:12],
            s.runtime,
            state,
            render.seconds(now - s.created_at),
            (s.run_id or "")[:8] or "-",
            urls,
        )
    render.out.print(table)


@app.command("down")
def down(
    stack_id: str = typer.Argument(..., metavar="ID", help="Stack id or its first characters."),
    force: bool = typer.Option(
        False, "--force", help="Also remove a stack whose owning process is still running."
    ),
) -> None:
    """Stop a stack and remove its processes or containers and its data.

    Examples:

      omnilab stack down 3fa2c1d8

      omnilab stack down 3fa2c1d8 --force   # even while the run that owns it goes on
    """
    from omnilab.config import get_settings
    from omnilab.errors import UsageError
    from omnilab.progress import Reporter
    from omnilab.runtimes import runtime_class

    state = _find(stack_id)
    if not state.keep and state.owner_is_alive() and not force:
        raise UsageError(
            f"stack {state.id[:12]} belongs to running process {state.owner_pid}; "
            "stop that process, or use --force"
        )
    cls = runtime_class(state.runtime)
    if cls is None:
        raise UsageError(f"stack {state.id[:12]} uses runtime {state.runtime!r}, not available")
    removed = cls(get_settings(), Reporter()).destroy(state)
    state.remove()
    render.out.print(f"stack {state.id[:12]} removed: {', '.join(removed) or 'nothing left'}")
