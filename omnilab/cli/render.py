"""Turning runs and stacks into terminal output (rich) or JSON."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from omnilab.tracking.records import RunRecord
from omnilab.tracking.run import Run

if TYPE_CHECKING:
    from omnilab.progress import Reporter

# No emoji codes: user text such as an image "a:b:c" must print as it is.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "blue",
}


def progress_reporter(json_output: bool = False) -> Reporter:
    """Where a command's progress goes: the process's reporter (on a terminal, a live
    display), or with ``--json`` lines on stderr: JSON is for a program, which reads a
    log, not a redrawn screen. ``OMNILAB_REPORTER`` still decides when it is set."""
    from omnilab.progress import REPORTER_VARIABLE, Reporter, default_reporter

    if json_output and not os.environ.get(REPORTER_VARIABLE):
        return Reporter()
    return default_reporter()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextlib.contextmanager
def stdout_for_json_only(active: bool = True) -> Iterator[None]:
    """With ``--json``, stdout carries the JSON and nothing else: while the command
    works, whatever else would reach it (an experiment's prints, the output of the
    processes it starts, which write to file descriptor 1) goes to stderr instead."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    previous, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stdout = previous
        os.dup2(saved, 1)
        os.close(saved)


def runs_elsewhere() -> None:
    """Under an empty answer about runs: one line saying where runs are that the
    tracking store in use does not hold (an old store this project no longer uses)."""
    from omnilab.config import get_settings
    from omnilab.tracking.elsewhere import runs_elsewhere as find

    try:
        line = find(get_settings())
    except Exception:  # a hint must never turn an answer into a failure
        return
    if line:
        err.print(f"[yellow]note:[/] {escape(line)}")


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s"
    minutes, secs = divmod(value, 60)
    return f"{int(minutes)}m{secs:04.1f}s"


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def compact(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 1] + "…"


def number(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _kv_table(data: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in sorted(data.items()):
        table.add_row(str(key), value if isinstance(value, str) else compact(value, 100))
    return table


def metrics_table(run: Run) -> Table | None:
    if not run.metric_summaries:
        return None
    table = Table(box=None, padding=(0, 2, 0, 2), header_style="bold")
    for name in ("metric", "last", "min", "max", "points", "last step"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for m in run.metric_summaries:
        table.add_row(
            m.key, number(m.last), number(m.min), number(m.max), str(m.count), str(m.last_step)
        )
    return table


def run_result(run: Run) -> None:
    """The end of ``omnilab run``: outcome, summary, metrics, where the files are."""
    t = run.timings
    parts = [
        f"{k.removesuffix('_s')} {seconds(t[k])}"
        for k in ("stack_start_s", "experiment_s", "teardown_s")
        if k in t
    ]
    timing = f" in {seconds(t.get('total_s'))}" + (f" ({', '.join(parts)})" if parts else "")
    out.print(f"run [bold]{run.id}[/] {status_text(run.status)}{timing}")
    if run.summary:
        out.print("summary")
        out.print(_kv_table(run.summary))
    table = metrics_table(run)
    if table is not None:
        out.print("metrics")
        out.print(table)
    if run.artifacts:
        out.print(f"artifacts: {run.artifacts_dir} ({len(run.artifacts)} files)")
    if run.status == "failed" and run.error:
        last = run.error.strip().splitlines()[-1]
        out.print(f"[red]error:[/] {escape(last)}")


def bounds_text(bounds: dict[str, Any] | None) -> str:
    """``memory 2 GiB, pids 1024, disk 1 GiB``: the bounds a service had (a run record's)."""
    if not bounds:
        return "-"
    shown = [f"{k} {bounds[k]}" for k in ("memory", "cpus", "pids", "disk") if bounds.get(k)]
    return ", ".join(shown) or "none"


def runs_table(records: list[RunRecord]) -> Table:
    """One line per run; only the summary column gives way on a narrow terminal."""
    rows = [
        (
            r.short_id,
            r.experiment,
            status_text(r.status),
            r.created_at.astimezone().strftime("%m-%d %H:%M:%S") if r.created_at else "-",
            seconds(r.duration),
            compact(r.summary, 200) if r.summary else "",
        )
        for r in records
    ]
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    names = ("id", "experiment", "status", "created", "duration")
    used = 0
    for i, name in enumerate(names):
        width = max(len(name), *(len(Text.from_markup(row[i]).plain) for row in rows))
        table.add_column(name, no_wrap=True, min_width=width)
        used += width + 2
    table.add_column(
        "summary", no_wrap=True, overflow="ellipsis", max_width=max(out.width - used, 10)
    )
    for row in rows:
        table.add_row(*row)
    return table


def run_details(run: Run) -> None:
    r = run.record
    out.print(f"run [bold]{r.id}[/]  {status_text(r.status)}")
    env = r.environment or {}
    git = env.get("git") or {}
    head: dict[str, Any] = {
        "experiment": r.experiment,
        "source": r.source or "-",
        "owner": r.owner or "-",
        "runtime": r.runtime or "-",
        "created": when(r.created_at),
        "started": when(r.started_at),
        "finished": when(r.finished_at),
        "duration": seconds(r.duration),
        "git": f"{git.get('commit', '')[:12]}{' (dirty)' if git.get('dirty') else ''}"
        if git
        else "-",
        "python": env.get("python", "-"),
        "run dir": r.run_dir or "-",
    }
    data = (r.stack or {}).get("data")
    if data:  # kept for `omnilab promote`: where, and what became of it
        kept = data.get("state") == "kept"
        until = f" until {data['expires_at'][:10]}" if kept and data.get("expires_at") else ""
        where = f" at {data['path']}" if data.get("path") else ""
        head["stack data"] = f"{data.get('state')}{where}{until}"
    out.print(_kv_table(head))
    out.print("params")
    out.print(_kv_table(r.params) if r.params else "  (none)")
    out.print("summary")
    out.print(_kv_table(r.summary) if r.summary else "  (none)")
    table = metrics_table(run)
    out.print("metrics")
    out.print(table if table is not None else "  (none)")
    services = (r.stack or {}).get("services") or {}
    if services:
        out.print("services")
        svc = Table(box=None, padding=(0, 2, 0, 2), header_style="bold")
        for name in ("service", "version", "source", "ready", "bounds"):
            svc.add_column(name)
        unbounded = (r.stack or {}).get("bounds", {}).get("enforced") is False
        for name, info in services.items():
            svc.add_row(
                name,
                info.get("version") or "-",
                info.get("source") or "-",
                seconds(info.get("ready_seconds")),
                "none (not enforced)" if unbounded else bounds_text(info.get("bounds")),
            )
        out.print(svc)
    if r.timings:
        out.print("timings")
        out.print(_kv_table({k: seconds(v) for k, v in r.timings.items()}))
    if run.artifacts:
        out.print("artifacts")
        art = Table(box=None, padding=(0, 2, 0, 2), header_style="bold")
        for name in ("path", "size", "sha256"):
            art.add_column(name)
        for a in run.artifacts:
            art.add_row(a.path, str(a.size), a.sha256[:16])
        out.print(art)
    if r.error:
        out.print("[red]error[/]")
        out.print(r.error.rstrip(), markup=False)


# -- choices derived from the plug-in registry (never listed by hand) --------------------


def _runtime_choice() -> type[StrEnum]:
    from omnilab.runtimes import runtime_names

    members = {name: name for name in runtime_names()}
    # mypy cannot know members made at run time; typer needs an Enum to list choices.
    return StrEnum("RuntimeChoice", members)  # type: ignore[return-value]


if TYPE_CHECKING:
    RuntimeChoice = str
else:
    #: ``--runtime``'s choices: ``auto`` and every runtime plug-in's name.
    RuntimeChoice = _runtime_choice()


def service_names() -> list[str]:
    from omnilab.services import service_names as names

    return names()


def default_stack() -> list[str]:
    """What a bare ``omnilab stack up`` starts: services that say so."""
    from omnilab.services import service_classes

    return [name for name, cls in service_classes().items() if cls.in_default_stack]
