"""Progress output for long work (starting services, running, tearing down).

Runners and stacks report through a :class:`Reporter`; the CLI prints to stderr so that
``--json`` output on stdout stays machine-readable. :func:`default_reporter` gives a live
display where one can be drawn: on a terminal (``omnilab.terminal``: rich, updated in
place) and inside a Jupyter kernel (``omnilab.notebook.reporter``); lines elsewhere.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from omnilab.tracking.metrics import MetricBuffer


class Reporter:
    """Prints one line per event to a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._stream = stream
        self.quiet = quiet
        self._lock = threading.Lock()

    @classmethod
    def wanted_here(cls) -> bool:
        """Whether this process should report this way unless told otherwise (the
        notebook panel: inside a Jupyter kernel). Lines are the fallback, never chosen."""
        return False

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def note(self, message: str) -> None:
        """A one-line message: a decision taken, a port moved, a fallback used."""
        if self.quiet:
            return
        with self._lock:
            print(message, file=self.stream, flush=True)

    def service_starting(self, name: str, source: str) -> None:
        self.note(f"  {name}: starting {source}")

    def service_ready(self, name: str, url: str, seconds: float) -> None:
        self.note(f"  {name}: ready at {url} ({seconds:.2f}s)")

    # Structured events: a terminal needs only some of them as lines, a live display
    # needs all of them to know what phase a run is in.

    def run_started(self, run_id: str, experiment: str) -> None:
        self.note(f"run {run_id} ({experiment})")

    def experiment_running(self, experiment: str, metrics: MetricBuffer | None = None) -> None:
        """The stack is up and ``experiment.run(ctx)`` begins; ``metrics`` fills as it logs."""
        self.note(f"running {experiment}")

    def stack_removed(self, stack_id: str, seconds: float) -> None:
        """Every service of the stack is gone (end of a run, of a ``with`` block, a failure)."""

    def experiment_ended(self, experiment: str, seconds: float) -> None:
        """``experiment.run(ctx)`` returned or raised; teardown and recording follow."""

    def run_finished(
        self, run_id: str, status: str, seconds: float | None, error: str | None = None
    ) -> None:
        """The run's outcome is known (recorded too, unless the tracking store failed)."""

    def task(
        self,
        label: str,
        total: int | None = None,
        unit: str = "",
        *,
        every: float | None = 5.0,
        verb: str = "done",
    ) -> Task:
        """How far one long piece of work is (a copy, an image build's steps).

        Here a line every ``every`` seconds (none when ``None``), so that a log shows a
        long copy is alive without one line per batch; a terminal draws a bar instead.
        """
        return Task(self, label, total, unit, every=every, verb=verb)


class Task:
    """One long piece of work as lines: what :meth:`Reporter.task` gives where nothing
    is drawn in place. Reporters that draw (bars) subclass it; callers only use
    :meth:`advance`, :meth:`update`, :meth:`describe` and :meth:`close` (or ``with``)."""

    def __init__(
        self,
        reporter: Reporter,
        label: str,
        total: int | None,
        unit: str,
        *,
        every: float | None = 5.0,
        verb: str = "done",
    ) -> None:
        self.reporter = reporter
        self.label = label
        self.total = total
        self.unit = unit
        self.every = every
        self.verb = verb
        self.done = 0
        self.began = time.monotonic()
        self._last = self.began

    def advance(self, n: int = 1) -> None:
        self.update(completed=self.done + n)

    def update(self, *, completed: int | None = None, total: int | None = None) -> None:
        if completed is not None:
            self.done = completed
        if total is not None:
            self.total = total
        self._changed()

    def describe(self, text: str) -> None:
        """What the work is doing now (an image build's step): a line of its own here."""
        self.reporter.note(f"    {text}")

    def close(self) -> None:
        """The work is over (done or not): a drawn bar goes away."""

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.began

    def _changed(self) -> None:
        if self.every is None:
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            total = f"/{self.total:,}" if self.total else ""
            pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            unit = f" {self.unit}" if self.unit else ""
            self.reporter.note(f"    {self.label}: {self.done:,}{total}{unit} {self.verb}{pct}")

    def __enter__(self) -> Task:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class QuietReporter(Reporter):
    def __init__(self) -> None:
        super().__init__(quiet=True)


#: Names the reporter plug-in every run and stack uses, whatever the process.
REPORTER_VARIABLE = "OMNILAB_REPORTER"


def default_reporter() -> Reporter:
    """The reporter for this process: the one ``OMNILAB_REPORTER`` names, else the first
    ``reporter`` plug-in that wants it (the live panel inside a Jupyter kernel), else
    lines on stderr.

    Reporters are plug-ins (:mod:`omnilab.plugins`) so that this module, at the bottom of
    the layers, never imports the notebook code that subclasses it.
    """
    from omnilab import plugins

    chosen = os.environ.get(REPORTER_VARIABLE)
    if chosen:
        return _reporter(plugins.load("reporter", chosen), chosen)
    for name in plugins.names("reporter"):
        try:
            cls = plugins.load("reporter", name)
        except plugins.PluginUnavailable:
            continue
        wanted = isinstance(cls, type) and issubclass(cls, Reporter) and cls.wanted_here()
        if wanted and cls is not Reporter:
            return _reporter(cls, name)
    return Reporter()


def _reporter(cls: Any, name: str) -> Reporter:
    from omnilab.errors import UsageError

    if not (isinstance(cls, type) and issubclass(cls, Reporter)):
        raise UsageError(f"the reporter plug-in {name!r} is not a Reporter subclass")
    return cls() if cls is not Reporter else Reporter()
