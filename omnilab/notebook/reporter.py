"""Live progress in a notebook cell: one display, updated in place as a run goes on.

On a terminal each event is a line on stderr; in a notebook those lines pile up in red
under the cell. Here the same events update one small panel instead: each service with
its state and time, the phase of the run with a running clock, the metrics logged so
far, and finally the outcome. :func:`omnilab.progress.default_reporter` picks this
reporter inside a Jupyter kernel.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omnilab.notebook.detect import in_jupyter_kernel
from omnilab.notebook.html import CSS, STATUS_COLORS, esc, seconds
from omnilab.progress import Reporter

if TYPE_CHECKING:
    from omnilab.tracking.metrics import MetricBuffer

#: Notes kept on the panel (runtime choice, moved ports, warnings); older ones scroll off.
MAX_NOTES = 8
_PHASE_COLORS = {**STATUS_COLORS, "starting": "#8250df", "ready": "#0969da", "removed": "#6e7781"}
_MARKS = {"starting": "◌", "ready": "●", "removed": "○"}


@dataclass
class _Service:
    source: str
    began: float = field(default_factory=time.monotonic)
    state: str = "starting"
    url: str = ""
    seconds: float | None = None


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


class NotebookReporter(Reporter):
    """Shows a run's or a stack's progress as one display that updates itself."""

    @classmethod
    def wanted_here(cls) -> bool:
        return in_jupyter_kernel()

    def __init__(self, *, interval: float = 0.5) -> None:
        super().__init__()
        self.interval = interval
        self._state_lock = threading.RLock()
        self._began = time.monotonic()
        self._run: tuple[str, str] | None = None  # run id, experiment
        self._stack_id: str | None = None
        self._notes: list[str] = []
        self._services: dict[str, _Service] = {}
        self._running_since: float | None = None
        self._metrics: MetricBuffer | None = None
        self._removed: float | None = None  # teardown seconds, once the stack is gone
        self._outcome: tuple[str, float | None] | None = None
        self._handle: Any = None
        self._cell: int | None = None
        self._ticker: threading.Thread | None = None

    # -- events -------------------------------------------------------------------------

    def note(self, message: str) -> None:
        if self.quiet:
            return
        with self._state_lock:
            self._notes = [*self._notes, message.strip()][-MAX_NOTES:]
        self._refresh()

    def service_starting(self, name: str, source: str) -> None:
        with self._state_lock:
            self._services[name] = _Service(source)
        self._refresh()

    def service_ready(self, name: str, url: str, seconds: float) -> None:
        with self._state_lock:
            service = self._services.setdefault(name, _Service(""))
            service.state, service.url, service.seconds = "ready", url, seconds
        self._refresh()

    def run_started(self, run_id: str, experiment: str) -> None:
        with self._state_lock:
            self._run = (run_id, experiment)
            self._began = time.monotonic()
        self._refresh()

    def experiment_running(self, experiment: str, metrics: MetricBuffer | None = None) -> None:
        with self._state_lock:
            self._running_since = time.monotonic()
            self._metrics = metrics
        self._refresh()

    def stack_removed(self, stack_id: str, seconds: float) -> None:
        with self._state_lock:
            self._stack_id = stack_id
            self._removed = seconds
            for service in self._services.values():
                service.state = "removed"
        # An ad-hoc stack ends here; a run ends with run_finished.
        self._refresh(final=self._run is None)

    def run_finished(
        self, run_id: str, status: str, seconds: float | None, error: str | None = None
    ) -> None:
        with self._state_lock:
            self._outcome = (status, seconds)
            self._metrics = None
            if error and status != "succeeded":
                lines = error.strip().splitlines()
                self._notes = [*self._notes, f"error: {lines[-1] if lines else error}"]
        self._refresh(final=True)

    # -- state --------------------------------------------------------------------------

    def phase(self) -> str:
        """What the panel's badge says: starting, ready, running, removed, or the outcome."""
        with self._state_lock:
            if self._outcome is not None:
                return self._outcome[0]
            if self._removed is not None:
                return "removed"
            if self._running_since is not None:
                return "running"
            if self._services and all(s.state == "ready" for s in self._services.values()):
                return "ready" if self._run is None else "starting"
            return "starting"

    def _live(self) -> bool:
        """Something is under way whose clock should tick: a service or the experiment."""
        with self._state_lock:
            if self._outcome is not None or self._removed is not None:
                return False
            starting = any(s.state == "starting" for s in self._services.values())
            return starting or self._running_since is not None

    def _started(self) -> bool:
        """Whether anything has begun. Notes that come first (the runtime chosen) wait
        for it: input refused before anything starts shows no panel, only its error."""
        return self._run is not None or bool(self._services)

    # -- rendering ----------------------------------------------------------------------

    def _lines(self) -> tuple[str, list[str], list[tuple[str, str, str, str]], str]:
        """Title, notes, service rows (mark+name, state, where, time), and status line."""
        now = time.monotonic()
        phase = self.phase()
        if self._run is not None:
            title = f"run {self._run[0][:8]} · {self._run[1]}"
        else:
            title = f"stack {self._stack_id[:12]}" if self._stack_id else "stack"
        rows = []
        for name, s in self._services.items():
            took = s.seconds if s.seconds is not None else now - s.began
            where = s.url if s.state == "ready" else s.source
            shown = f"{seconds(took)}{'…' if s.state == 'starting' else ''}"
            rows.append((f"{_MARKS.get(s.state, '·')} {name}", s.state, where, shown))
        status = ""
        if self._outcome is not None:
            total = self._outcome[1]
            status = f"{self._outcome[0]}" + (f" in {seconds(total)}" if total else "")
        elif self._running_since is not None:
            status = f"experiment running · {seconds(now - self._running_since)}"
            if self._removed is not None:
                status = "tearing down"
            elif self._metrics is not None:
                steps = self._metrics.latest_steps()
                if steps:
                    top = ", ".join(f"{k} @ {v}" for k, v in list(steps.items())[:4])
                    more = f" +{len(steps) - 4}" if len(steps) > 4 else ""
                    status += f" · metrics: {top}{more}"
        elif phase == "removed":
            status = f"removed in {seconds(self._removed)}"
        elif phase == "starting":
            status = f"starting · {seconds(now - self._began)}"
        return title, list(self._notes), rows, status

    def render_html(self) -> str:
        with self._state_lock:
            title, notes, rows, status = self._lines()
            phase = self.phase()
        color = _PHASE_COLORS.get(phase, "#6e7781")
        parts = [
            f'{CSS}<div class="omnilab"><div class="ol-head">'
            f'<span class="ol-title">{esc(title)}</span>'
            f'<span class="ol-badge" style="background:{color}">{esc(phase)}</span></div>'
        ]
        parts += [f'<div class="ol-muted">{esc(n)}</div>' for n in notes]
        if rows:
            parts.append("<table>")
            parts += [
                f"<tr><th>{esc(a)}</th><td>{esc(b)}</td><td><code>{esc(c)}</code></td>"
                f'<td class="ol-num">{esc(d)}</td></tr>'
                for a, b, c, d in rows
            ]
            parts.append("</table>")
        if status:
            parts.append(f"<div>{esc(status)}</div>")
        parts.append("</div>")
        return "".join(parts)

    def render_text(self) -> str:
        with self._state_lock:
            title, notes, rows, status = self._lines()
            phase = self.phase()
        lines = [f"{title} [{phase}]", *notes]
        lines += [f"  {a:12s} {b:9s} {c}  {d}" for a, b, c, d in rows]
        if status:
            lines.append(status)
        return "\n".join(lines)

    # -- display ------------------------------------------------------------------------

    def _refresh(self, *, final: bool = False) -> None:
        """Publish the panel; never let a display problem disturb the run itself."""
        if self.quiet or not self._started():
            return
        with contextlib.suppress(Exception):  # progress is best effort; the run is not
            self._publish(final)
        if not final and self._live():
            self._ensure_ticker()

    def _publish(self, final: bool) -> None:
        from IPython.display import display

        with self._state_lock:
            bundle = {"text/html": self.render_html(), "text/plain": self.render_text()}
            shell = _shell()
            cell = getattr(shell, "execution_count", None)
            if self._handle is None or (final and cell != self._cell):
                # First event, or the end of a stack opened in an earlier cell: show
                # it where the user is looking now.
                self._handle = display(bundle, raw=True, display_id=True)
                self._cell = cell
            else:
                self._handle.update(bundle, raw=True)

    def _ensure_ticker(self) -> None:
        with self._state_lock:
            if self._ticker is not None and self._ticker.is_alive():
                return
            self._ticker = threading.Thread(target=self._tick, name="omnilab-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Keep the clocks moving while something is starting or running."""
        while True:
            time.sleep(self.interval)
            if not self._live():
                return
            try:
                self._publish(final=False)
            except Exception:
                return
