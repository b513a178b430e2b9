"""Live progress on a terminal: the events of runs and stacks, drawn in place with rich.

Lines on stderr tell a log what happened; a person at a terminal also wants to see that
something is happening: which services are still starting and for how long, a clock for
the experiment, the metrics it logs as it logs them, how far a copy is. While something
is under way this reporter keeps a small display at the bottom of the terminal (rich's
``Live``, transient: it goes when nothing is under way); what is done is printed above
it as ordinary lines, so that what stays on screen is a compact record of the run.

:func:`omnilab.progress.default_reporter` picks it when stderr is a terminal, ``CI`` is
not set and ``TERM`` is not ``dumb``; ``OMNILAB_REPORTER=lines`` (and ``omnilab run
--json``) keep plain lines.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group, RenderableType
from rich.file_proxy import FileProxy
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from omnilab.progress import Reporter, Task

if TYPE_CHECKING:
    from omnilab.tracking.metrics import MetricBuffer

#: Metrics shown under the running experiment; the others are counted ("+3 more").
MAX_METRICS = 8
#: Redraws per second: often enough for a clock with tenths to look alive.
REFRESH_PER_SECOND = 8
_STATUS_STYLES = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}


def in_ci() -> bool:
    """Whether a CI service runs this (``CI`` set, as they all set it): its log is a
    terminal sometimes, but nobody watches it live and redraws only clutter it."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def live_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stderr) is a terminal a display can be redrawn on."""
    if in_ci() or os.environ.get("TERM") == "dumb":
        return False
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def clock(value: float) -> str:
    """``4.2s``, ``1m05s``: a running clock, tenths while it is short."""
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"


def number(value: float) -> str:
    return f"{value:.6g}"


def metrics_line(latest: dict[str, tuple[int, float]], limit: int = MAX_METRICS) -> str:
    """``loss 0.12 (step 15), acc 0.9 (step 15)``: the last values, for a static line."""
    shown = [f"{k} {number(v)} (step {s})" for k, (s, v) in list(latest.items())[:limit]]
    more = f", +{len(latest) - limit} more" if len(latest) > limit else ""
    return ", ".join(shown) + more


@dataclass
class _Starting:
    source: str
    began: float = field(default_factory=time.monotonic)


class TerminalReporter(Reporter):
    """Draws a run's or a stack's progress in place on stderr; see the module's doc."""

    @classmethod
    def wanted_here(cls) -> bool:
        return live_terminal()

    def __init__(
        self, console: Console | None = None, *, refresh_per_second: float = REFRESH_PER_SECOND
    ) -> None:
        super().__init__()
        # The stream is fixed now: while a run goes on, sys.stderr is the run's log tee
        # (and, under a live display, rich's proxy); drawing into either would put cursor
        # movements in the log or loop back into the display.
        self.console = console or Console(file=sys.stderr, highlight=False)
        self.refresh_per_second = refresh_per_second
        self._state = threading.RLock()  # never held while calling into rich
        self._display = threading.Lock()  # one start or stop of the display at a time
        self._live: Live | None = None
        self._starting: dict[str, _Starting] = {}
        self._run: tuple[str, str] | None = None  # run id, experiment
        #: From the run's start to its experiment's: the stack is being prepared (an
        #: initdb may take seconds before its service says it is starting).
        self._preparing_since: float | None = None
        self._experiment: str | None = None
        self._running_since: float | None = None
        self._metrics: MetricBuffer | None = None
        self._teardown_since: float | None = None
        self._spinners: dict[str, Spinner] = {}
        self._bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),  # a build's line: "[1/3]"
            BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}", markup=False),
            TimeElapsedColumn(),
            console=self.console,
            auto_refresh=False,
        )
        _OPEN.add(self)

    # -- events -------------------------------------------------------------------------

    def note(self, message: str) -> None:
        if not self.quiet:
            self._print(Text(message))

    def service_starting(self, name: str, source: str) -> None:
        with self._state:
            self._starting[name] = _Starting(source)
        self._sync()

    def service_ready(self, name: str, url: str, seconds: float) -> None:
        with self._state:
            self._starting.pop(name, None)
        self._print(Text.assemble("  ", (name, "bold"), f": ready at {url} ({seconds:.2f}s)"))
        self._sync()

    def run_started(self, run_id: str, experiment: str) -> None:
        with self._state:
            self._run = (run_id, experiment)
            self._preparing_since = time.monotonic()
        self._print(Text.assemble("run ", (run_id, "bold"), f" ({experiment})"))
        self._sync()

    def experiment_running(self, experiment: str, metrics: MetricBuffer | None = None) -> None:
        with self._state:
            self._experiment = experiment
            self._preparing_since = None
            self._running_since = time.monotonic()
            self._metrics = metrics
        self._sync()

    def experiment_ended(self, experiment: str, seconds: float) -> None:
        with self._state:
            metrics, self._metrics = self._metrics, None
            self._running_since = None
            self._teardown_since = time.monotonic()
        latest = metrics.latest() if metrics is not None else {}
        self._print(Text.assemble("  ran ", (experiment, "bold"), f" in {seconds:.2f}s"))
        if latest:
            self._print(Text(f"  metrics: {metrics_line(latest)}"))
        self._sync()

    def stack_removed(self, stack_id: str, seconds: float) -> None:
        with self._state:
            self._teardown_since = self._preparing_since = None
            self._starting.clear()  # a failed start: what was starting is gone too
        self._print(Text(f"  stack removed in {seconds:.2f}s", style="dim"))
        self._sync()

    def run_finished(
        self, run_id: str, status: str, seconds: float | None, error: str | None = None
    ) -> None:
        with self._state:
            self._running_since = self._teardown_since = self._preparing_since = None
            self._metrics = None
            self._starting.clear()
        took = f" in {seconds:.2f}s" if seconds is not None else ""
        style = _STATUS_STYLES.get(status, "")
        self._print(Text.assemble("run ", (run_id[:8], "bold"), " ", (status, style), took))
        self._sync()

    def task(
        self,
        label: str,
        total: int | None = None,
        unit: str = "",
        *,
        every: float | None = 5.0,
        verb: str = "done",
    ) -> Task:
        if self.quiet:
            return Task(self, label, total, unit, every=None, verb=verb)
        return _BarTask(self, label, total, unit, verb=verb)

    # -- the display --------------------------------------------------------------------

    def close(self) -> None:
        """Take the display down now (the end of the process, an error the runner did
        not report): the cursor comes back, the terminal is left clean."""
        with self._state:
            self._starting.clear()
            self._running_since = self._teardown_since = self._preparing_since = None
            self._metrics = None
        for task_id in list(self._bars.task_ids):
            self._bars.remove_task(task_id)
        self._sync()

    def _busy(self) -> bool:
        with self._state:
            phases = (self._preparing_since, self._running_since, self._teardown_since)
            under_way = any(since is not None for since in phases)
            return under_way or bool(self._starting) or bool(self._bars.task_ids)

    def _sync(self) -> None:
        """Show the display while something is under way, take it down when nothing is."""
        if self.quiet:
            return
        with self._display:
            busy = self._busy()
            if busy and self._live is None:
                self._live = Live(
                    console=self.console,
                    get_renderable=self._render,
                    refresh_per_second=self.refresh_per_second,
                    transient=True,
                    redirect_stdout=False,  # see _proxy: rich's own puts back too much
                    redirect_stderr=False,
                )
                self._live.start(refresh=True)  # at once: a short copy still shows
                self._proxy()
            elif not busy and self._live is not None:
                live, self._live = self._live, None
                live.stop()
                self._unproxy()
            elif self._live is not None:
                self._live.refresh()

    def _proxy(self) -> None:
        """While the display is up, what the process prints to the terminal goes above it
        (written straight through, it would be drawn over). stdout only when it is the
        terminal too: piped, it must keep what is printed to it."""
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, FileProxy):
                continue
            if name == "stdout" and not live_terminal(stream):
                continue
            setattr(sys, name, _Proxy(self, stream))

    def _unproxy(self) -> None:
        """Put back what :meth:`_proxy` replaced, where it is still in place. The runner
        swaps sys.stdout for its log tee and back meanwhile: a stream it swapped is left
        to it (a proxy it puts back writes straight through once the display is down)."""
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _Proxy) and stream.reporter is self:
                stream.flush()
                setattr(sys, name, stream.rich_proxied_file)

    def _print(self, text: Text) -> None:
        """A line that stays: above the display while there is one."""
        if not self.quiet:
            self.console.print(text, soft_wrap=True)

    def _spinner(self, key: str, text: Text) -> Spinner:
        """The row's spinner, kept between redraws (a new one would never turn)."""
        spinner = self._spinners.get(key)
        if spinner is None:
            spinner = self._spinners[key] = Spinner("dots", text, style="cyan")
        else:
            spinner.update(text=text)
        return spinner

    def _render(self) -> RenderableType:
        now = time.monotonic()
        with self._state:
            starting = list(self._starting.items())
            experiment, since = self._experiment, self._running_since
            teardown, metrics = self._teardown_since, self._metrics
            preparing, run = self._preparing_since, self._run
        rows: list[RenderableType] = []
        if preparing is not None and run is not None:
            text = Text.assemble(
                "starting the stack for ", (run[1], "bold"), " · ", (clock(now - preparing), "cyan")
            )
            rows.append(self._spinner("stack", text))
        for name, service in starting:
            text = Text.assemble(
                (name, "bold"),
                f": starting {service.source} · ",
                (clock(now - service.began), "cyan"),
            )
            rows.append(self._spinner(f"service:{name}", text))
        if since is not None:
            text = Text.assemble(
                "running ", (experiment or "", "bold"), " · ", (clock(now - since), "cyan")
            )
            rows.append(self._spinner("experiment", text))
            latest = metrics.latest() if metrics is not None else {}
            if latest:
                rows.append(_metrics_table(latest))
        if teardown is not None:
            text = Text.assemble("tearing down the stack · ", (clock(now - teardown), "cyan"))
            rows.append(self._spinner("teardown", text))
        if self._bars.task_ids:
            rows.append(self._bars)
        return Group(*rows)


def _metrics_table(latest: dict[str, tuple[int, float]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    items = list(latest.items())
    for key, (step, value) in items[:MAX_METRICS]:
        table.add_row(f"  {key}", number(value), f"step {step}")
    if len(items) > MAX_METRICS:
        table.add_row(f"  +{len(items) - MAX_METRICS} more", "", "")
    return table


class _Proxy(FileProxy):
    """rich's stream proxy, which writes straight through when the display is down."""

    def __init__(self, reporter: TerminalReporter, stream: TextIO) -> None:
        super().__init__(reporter.console, stream)
        self.reporter = reporter

    def write(self, text: str) -> int:
        if self.reporter._live is None:
            return self.rich_proxied_file.write(text)
        return super().write(text)


class _BarTask(Task):
    """A copy or a build as a bar in the terminal's display."""

    def __init__(
        self, reporter: TerminalReporter, label: str, total: int | None, unit: str, *, verb: str
    ) -> None:
        super().__init__(reporter, label, total, unit, every=None, verb=verb)
        self._owner = reporter
        self._id: TaskID | None = reporter._bars.add_task(
            f"  {label}", total=total or None, count=self._count()
        )
        reporter._sync()

    def _count(self) -> str:
        total = f"/{self.total:,}" if self.total else ""
        return f"{self.done:,}{total} {self.unit}".rstrip()

    def update(self, *, completed: int | None = None, total: int | None = None) -> None:
        super().update(completed=completed, total=total)
        if self._id is not None:
            self._owner._bars.update(
                self._id, completed=self.done, total=self.total or None, count=self._count()
            )

    def describe(self, text: str) -> None:
        if self._id is not None:
            self._owner._bars.update(self._id, description=f"  {self.label}: {text}")

    def close(self) -> None:
        if self._id is None:
            return
        task_id, self._id = self._id, None
        self._owner._bars.remove_task(task_id)
        self._owner._sync()


#: Reporters whose display may be up: taken down when the process exits, whatever
#: happened before (the cursor would otherwise stay hidden).
_OPEN: weakref.WeakSet[TerminalReporter] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for reporter in list(_OPEN):
        reporter.close()
