"""Turning runs and stacks into terminal output (rich) or JSON."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from omnilab.recorded import Run
from omnilab.tracking.records import RunRecord

if TYPE_CHECKING:
    from omnilab.notebook.compare import Comparison
    from omnilab.progress import Reporter
    from omnilab.tracking.queued_runs import QueueInfo
    from omnilab.tracking.workers import WorkerView

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


def runs_elsewhere(*, found: bool = False) -> None:
    """Under an answer about runs: one line (on stderr) saying where runs are that the
    tracking store in use does not hold (an old store this project no longer uses).
    ``found``: the answer listed runs, so the line is dim and looks only at folders."""
    from omnilab.config import get_settings
    from omnilab.tracking.elsewhere import runs_elsewhere as find

    try:
        line = find(get_settings(), local_only=found)
    except Exception:  # a hint must never turn an answer into a failure
        return
    if line and found:
        err.print(f"[dim]note: {escape(line)}[/]")
    elif line:
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


def ago(value: datetime | None) -> str:
    """``4s``, ``12m``, ``3h``, ``2d``: how long ago."""
    if value is None:
        return "-"
    seconds_ago = max(0.0, (datetime.now(value.tzinfo) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds_ago >= size:
            return f"{int(seconds_ago // size)}{unit}"
    return f"{int(seconds_ago)}s"


def short_when(value: datetime | None) -> str:
    """``14:05`` today, ``Dec 06`` before (as ``ls -l`` does): a listing's narrow column;
    ``runs show`` has the whole time."""
    if value is None:
        return "-"
    local = value.astimezone()
    today = datetime.now(local.tzinfo).date()
    return local.strftime("%H:%M" if local.date() == today else "%b %d")


def compact(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 1] + "…"


def number(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def clip(text: str, width: int) -> str:
    """``text`` on at most ``width`` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _kv_table(data: dict[str, Any]) -> Table:
    """Keys and values, one line each, whatever the terminal's width: a dict value is
    shown as one line per key (``status.fizzbuzz``), and a value too long for the line
    is cut (``--json`` has it whole)."""
    rows: list[tuple[str, str]] = []
    for key, value in sorted(data.items(), key=lambda kv: str(kv[0])):
        if isinstance(value, dict) and value and len(value) <= 20:
            rows += [(f"{key}.{k}", _text(v)) for k, v in value.items()]
        else:
            rows.append((str(key), _text(value)))
    key_width = max((len(k) for k, _ in rows), default=0)
    room = max(out.width - key_width - 8, 16)  # each column: 2 spaces on either side
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 2))
    table.add_column(style="bold", no_wrap=True, min_width=key_width)
    table.add_column(no_wrap=True, overflow="ellipsis")
    for key, text in rows:
        table.add_row(Text(key), Text(clip(text, room)))
    return table


def _text(value: Any) -> str:
    return value if isinstance(value, str) else compact(value, 10_000)


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
    label = name_and_tags(run.record)
    if label:
        out.print(label, markup=False)
    if run.summary:
        out.print("summary")
        out.print(_kv_table(run.summary))
    table = metrics_table(run)
    if table is not None:
        out.print("metrics")
        out.print(table)
    if run.artifacts:
        where = run.artifacts_url or run.artifacts_dir
        n = len(run.artifacts)
        out.print(f"artifacts: {escape(str(where))} ({n} file{'' if n == 1 else 's'})")
    _upload_problem(run)
    if run.status == "failed" and run.error:
        last = run.error.strip().splitlines()[-1]
        out.print(f"[red]error:[/] {escape(last)}")


def _upload_problem(run: Run) -> None:
    """The line saying that the run's files could not be uploaded, and where they are."""
    failed = (run.record.artifacts_upload or {}).get("error")
    if failed:
        upload = run.record.artifacts_upload or {}
        err.print(
            f"[yellow]warning:[/] {escape(failed)}; its files stay in "
            f"{escape(str(upload.get('local')))} on {escape(str(upload.get('host')))}"
        )


def bounds_text(bounds: dict[str, Any] | None) -> str:
    """``memory 2 GiB, pids 1024, disk 1 GiB``: the bounds a service had (a run record's)."""
    if not bounds:
        return "-"
    shown = [f"{k} {bounds[k]}" for k in ("memory", "cpus", "pids", "disk") if bounds.get(k)]
    return ", ".join(shown) or "none"


def run_label(run_id: str, experiment: str | None = None, name: str | None = None) -> str:
    """A run in one line, as every command that speaks of one names it:
    ``run 85aa626c "baseline" (Hello)`` (rich markup, values escaped). The name is the
    one a user gave it (``--name``): the id alone says nothing to them."""
    named = f' "{escape(name)}"' if name else ""
    return f"run [bold]{run_id[:8]}[/]{named} ({escape(experiment or '-')})"


def name_and_tags(record: RunRecord) -> str:
    """``name baseline · tags sweep-1, small``, or nothing for a run with neither."""
    parts = []
    if record.name:
        parts.append(f"name {record.name}")
    if record.tags:
        parts.append(f"tags {', '.join(record.tags)}")
    return " · ".join(parts)


#: Width of each column's values at most (a cut value ends with "…").
_CAPS = {"name": 20, "experiment": 24, "tags": 20}
_PARAM_CAP = 16
_GAP = 2


@dataclass
class Column:
    """One column of a table that must fit the terminal on one line per row."""

    header: str
    values: list[str]
    styles: list[str] | None = None  # rich styles per row (the status' colour)
    cap: int = 10_000
    shrinks: bool = False  # may be cut when the columns that must show do not fit
    key: str = ""  # what the column shows, when its header is cut (a param's name)
    differs: bool = False  # a param whose values differ between the rows

    @property
    def width(self) -> int:
        return min(self.cap, max([len(self.header), *(len(v) for v in self.values)]))


def fitted_table(
    columns: list[Column], extra: list[Column], rest: Column | None
) -> tuple[Table, list[Column]]:
    """A table of ``columns`` (always shown), then as many of ``extra`` as fit the
    terminal, then ``rest`` on whatever width is left (left out under 12 characters):
    every row on one line, no line wider than the terminal. Returns the columns shown."""
    shown = list(columns)
    used = sum(c.width for c in shown) + _GAP * (len(shown) - 1)
    while used > out.width:  # the widest of the columns that may shrink gives way
        candidates = [c for c in shown if c.shrinks and c.width > 6]
        if not candidates:
            break
        widest = max(candidates, key=lambda c: c.width)
        widest.cap = widest.width - 1
        used -= 1
    for column in extra:
        if used + _GAP + column.width > out.width:
            break
        shown.append(column)
        used += _GAP + column.width
    if rest is not None and out.width - used - _GAP >= 12:
        rest.cap = min(rest.cap, out.width - used - _GAP)
        shown.append(rest)
    table = Table(box=None, padding=(0, _GAP, 0, 0), pad_edge=False, header_style="bold")
    for column in shown:
        table.add_column(column.header, no_wrap=True, width=column.width, overflow="ellipsis")
    for i in range(len(shown[0].values) if shown else 0):
        table.add_row(
            *(
                Text(clip(c.values[i], c.width), style=c.styles[i] if c.styles else "")
                for c in shown
            )
        )
    return table, shown


def param_columns(params: list[dict[str, Any]]) -> list[Column]:
    """One column per param, those whose values differ between the runs first (what sets
    runs apart), in order of first appearance (the newest run's params lead)."""
    keys = list(dict.fromkeys(k for p in params for k in p))
    missing = object()
    values = {k: [p.get(k, missing) for p in params] for k in keys}
    differing = [k for k in keys if any(v != values[k][0] for v in values[k][1:])]
    ordered = differing + [k for k in keys if k not in differing]
    return [
        Column(
            clip(k, _PARAM_CAP),
            ["" if v is missing else (v if isinstance(v, str) else compact(v)) for v in values[k]],
            cap=_PARAM_CAP,
            key=k,
            differs=k in differing,
        )
        for k in ordered
    ]


def runs_table(records: list[RunRecord]) -> tuple[Table, list[str]]:
    """One line per run: id, name, experiment, status, created, duration and tags, then
    as many param columns as fit, then the summary; returns the params left out."""
    columns = [Column("id", [r.short_id for r in records])]
    if any(r.name for r in records):
        names = [r.name or "" for r in records]
        columns.append(Column("name", names, cap=_CAPS["name"], shrinks=True))
    columns += [
        Column(
            "experiment", [r.experiment for r in records], cap=_CAPS["experiment"], shrinks=True
        ),
        Column(
            "status",
            [r.status for r in records],
            styles=[STATUS_STYLE.get(r.status, "") for r in records],
        ),
        Column("created", [short_when(r.created_at) for r in records]),
        Column("duration", [seconds(r.duration) for r in records]),
    ]
    if any(r.tags for r in records):
        tags = [",".join(r.tags) for r in records]
        columns.append(Column("tags", tags, cap=_CAPS["tags"], shrinks=True))
    params = param_columns([r.params for r in records])
    if params and params[0].differs:
        # What sets these runs apart is shown even at 80 columns: it may shrink, as the
        # name and the experiment do, rather than be left out for their full width.
        first = params.pop(0)
        first.shrinks = True
        columns.append(first)
    summary = Column("summary", [compact(r.summary, 200) if r.summary else "" for r in records])
    table, shown = fitted_table(columns, params, summary)
    return table, [p.key for p in params if not any(p is c for c in shown)]


def _file_name(source: str | None) -> str:
    """``quick.py`` of ``/srv/experiments/quick.py:Quick``: the file a run's code is."""
    path = (source or "").rsplit(":", 1)[0]
    return path.rsplit("/", 1)[-1] or "its experiment file"


def run_details(run: Run, info: QueueInfo | None = None) -> None:
    r = run.record
    out.print(f"run [bold]{r.id}[/]  {status_text(r.status)}")
    if r.waiting and r.status == "queued":
        out.print(f"[yellow]{escape(r.waiting)}[/]")
    env = r.environment or {}
    git = env.get("git") or {}
    head: dict[str, Any] = {
        **({"name": r.name} if r.name else {}),
        **({"tags": ", ".join(r.tags)} if r.tags else {}),
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
        "host": r.host or "-",
        "code": f"{r.code_sha256[:12]} (sha256 of {_file_name(r.source)})"
        if r.code_sha256
        else "-",
        "run dir": r.run_dir or "-",
    }
    if r.requires:
        head["requires"] = ", ".join(f"{k}={compact(v)}" for k, v in r.requires.items())
    if info is not None:
        where = f" (placed on host {info.host})" if info.host else ""
        head["queue"] = f"{info.queue}{where}, attempt {info.attempt} of {info.max_attempts}"
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
        for name, service in services.items():
            svc.add_row(
                name,
                service.get("version") or "-",
                service.get("source") or "-",
                seconds(service.get("ready_seconds")),
                "none (not enforced)" if unbounded else bounds_text(service.get("bounds")),
            )
        out.print(svc)
    if r.seeds:
        from omnilab.fork import describe

        out.print("forked from production")
        for row in describe(r.seeds):
            out.print(
                escape(
                    f"  {row['item']}: {row['copied']}, checksum {row['checksum']}, "
                    f"from {row['production']}"
                ),
                soft_wrap=True,
                highlight=False,
            )
    if r.timings:
        out.print("timings")
        out.print(_kv_table({k: seconds(v) for k, v in r.timings.items()}))
    if run.artifacts:
        out.print("artifacts" + (f" in {escape(run.artifacts_url)}" if run.artifacts_url else ""))
        art = Table(box=None, padding=(0, 2, 0, 2), header_style="bold")
        for name in ("path", "size", "sha256"):
            art.add_column(name)
        for a in run.artifacts:
            art.add_row(a.path, str(a.size), a.sha256[:16])
        out.print(art)
    _upload_problem(run)
    if r.error:
        out.print("[red]error[/]")
        out.print(r.error.rstrip(), markup=False)


# -- workers (omnilab workers) -----------------------------------------------------------


def worker_state(view: WorkerView, ttl: float) -> str:
    """``alive``, ``stopped 5m ago``, ``lost: silent for 45s``, with its colour."""
    if view.status == "alive":
        return f"[green]alive[/] (heartbeat {ago(view.heartbeat_at)} ago)"
    if view.status == "stopped":
        return f"[dim]stopped {ago(view.stopped_at)} ago[/]"
    return f"[red]lost[/]: no heartbeat for {ago(view.heartbeat_at)} (more than {ttl:g}s)"


def workers(views: list[WorkerView], ttl: float) -> None:
    """One block per worker: its host and state, then what it offers and runs."""
    alive = [v for v in views if v.status == "alive"]
    hosts = {v.host for v in alive}
    out.print(
        f"{len(alive)} worker{'s' if len(alive) != 1 else ''} alive on "
        f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}"
    )
    for view in views:
        out.print()
        out.print(
            f"[bold]{escape(view.host)}[/]  {worker_state(view, ttl)}  "
            f"[dim]worker {escape(view.id)}, pid {view.pid}, omnilab {view.version or '?'}[/]"
        )
        gpus = "; ".join(g.describe() for g in view.gpu_details) or ", ".join(view.gpus) or "none"
        labels = ", ".join(f"{k}={v}" for k, v in sorted(view.labels.items())) or "none"
        busy = len(view.running)
        running = (
            f"{', '.join(r[:8] for r in view.running)} ({busy} of {view.concurrency} slots)"
            if view.running
            else f"nothing ({view.concurrency} slot{'s' if view.concurrency != 1 else ''})"
        )
        out.print(
            _kv_table(
                {
                    "runtimes": ", ".join(view.runtimes) or "-",
                    "GPUs": gpus,
                    "labels": labels,
                    "running": running,
                    "queues": ", ".join(view.queues),
                }
            )
        )


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


def runtime_help() -> str:
    """``--runtime``'s help: every runtime plug-in's name, and what ``auto`` picks by
    their preferences."""
    from omnilab.runtimes import auto_rule, runtime_names

    return (
        f"Where the stack runs: {', '.join(runtime_names(auto=False))}, or auto "
        f"({auto_rule()}). Default: OMNILAB_RUNTIME or auto."
    )


def image_names_help() -> str:
    """``omnilab images build``'s help on its names: the image catalog (the base, each
    service's image that can be built here, experiments, codegen) and its default set."""
    from omnilab.runtimes.docker.images import catalog

    specs = list(catalog().values())
    plain = [s.name for s in specs if s.default and s.binary is None]
    with_binary = [s.name for s in specs if s.default and s.binary is not None]
    text = f"{', '.join(s.name for s in specs)}. Default: {' '.join(plain)}"
    if with_binary:
        text += f", and {' '.join(with_binary)} when its server binary is found"
    return text + "."


def service_names() -> list[str]:
    from omnilab.services import service_names as names

    return names()


def default_stack() -> list[str]:
    """What a bare ``omnilab stack up`` starts: services that say so."""
    from omnilab.services import service_classes

    return [name for name, cls in service_classes().items() if cls.in_default_stack]


# -- comparing runs (omnilab runs compare) -------------------------------------------------


def differs(values: list[Any]) -> bool:
    return any(v != values[0] for v in values[1:])


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "duration_s":
        return seconds(value)
    if isinstance(value, float):
        return number(value)
    return value if isinstance(value, str) else compact(value, 10_000)


def comparison(result: Comparison) -> None:
    """The runs as columns, what was recorded as rows (params, summary, metrics' last
    values), grouped; a row whose values differ is marked ``*`` and in colour. The
    columns share the terminal's width, so every row stays on one line."""
    rows = result.rows()
    runs = result.runs
    key_width = min(max([len(n) for _, n, _ in rows] + [4]) + 2, 26)
    room = out.width - key_width - _GAP * len(runs)
    col_width = max(room // len(runs), 8)
    table = Table(box=None, padding=(0, _GAP, 0, 0), pad_edge=False, header_style="bold")
    table.add_column("", no_wrap=True, width=key_width)
    for run in runs:
        table.add_column(run.short_id, no_wrap=True, width=col_width, overflow="ellipsis")
    group = None
    for g, name, values in rows:
        if g != group:
            group = g
            table.add_row(Text(g, style="dim"), *("" for _ in runs))
        marked = name != "duration_s" and differs(values)
        style = "bold yellow" if marked else ""
        key = clip(("* " if marked else "  ") + name.removesuffix("_s"), key_width)
        table.add_row(
            Text(key, style=style),
            *(Text(clip(_cell(name, v), col_width), style=style) for v in values),
        )
    out.print(table)
    out.print("[dim]* differs between the runs[/]")
