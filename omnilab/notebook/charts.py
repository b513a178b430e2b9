"""Metric charts of one run or several: one small chart per metric, runs overlaid.

Each metric gets a chart of its own because metrics of one run rarely share a scale
(a loss near 0.1 beside a latency near 300 ms would flatten one of them); the runs of a
comparison share each chart, in a fixed colour per run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import psycopg

from omnilab.errors import OmnilabError
from omnilab.notebook.html import CSS, esc
from omnilab.notebook.svg import PALETTE, Line, line_chart
from omnilab.tracking.chart_cache import ChartCache
from omnilab.tracking.queries import ChartSeries, DisplayStore

if TYPE_CHECKING:
    from omnilab.recorded import Run
    from omnilab.tracking.store import TrackingStore

T = TypeVar("T")

#: Pixel width of one chart; the reduction in the store uses one bucket per pixel.
CHART_WIDTH = 300
CHART_HEIGHT = 140
#: Charts shown by default; more metrics than this are listed, each one a ``plot`` away.
MAX_CHARTS = 12


def load_series(
    runs: Sequence[Run], *, store: TrackingStore | None = None, width: int = CHART_WIDTH
) -> list[dict[str, ChartSeries]]:
    """Chart-ready series of each run, read over one store connection (``store`` or a new
    one). A run keeps what was read for it, so showing it again costs nothing. At the
    web page's width, a finished run's series are those its end kept in the store."""
    missing = [r for r in runs if r._series is None]
    if missing:
        with contextlib.ExitStack() as stack:
            if store is None:
                store = stack.enter_context(missing[0]._store())
            display, kept = DisplayStore(store), ChartCache(store)
            for run in missing:
                if width == CHART_WIDTH:
                    run._series = kept.charts(run.record, width).series
                else:
                    run._series = display.chart_series(run.id, buckets=width)
    return [r._series or {} for r in runs]


def metric_svgs(
    per_run: Sequence[tuple[str, dict[str, ChartSeries]]],
    keys: Sequence[str],
    *,
    width: int = CHART_WIDTH,
    height: int = CHART_HEIGHT,
) -> list[str]:
    """One SVG per key; each run drawn in its palette colour (by position in ``per_run``)."""
    svgs = []
    for key in keys:
        lines = []
        for i, (label, series) in enumerate(per_run):
            s = series.get(key)
            if s is not None and s.steps:
                color = PALETTE[i % len(PALETTE)]
                lines.append(Line(label, s.steps, s.values, color=color, total=s.total))
        if lines:
            svgs.append(line_chart(lines, title=key, width=width, height=height))
    return svgs


def charts_html(svgs: Sequence[str], more: Sequence[str] = ()) -> str:
    if not svgs:
        return ""
    extra = ""
    if more:
        names = ", ".join(esc(k) for k in more)
        extra = f'<div class="ol-muted">not drawn: {names} (use <code>.plot("name")</code>)</div>'
    return f'<div class="ol-charts">{"".join(svgs)}</div>{extra}'


def safely(loader: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run ``loader``; a store that cannot be read becomes a note, not a broken display.

    Jupyter calls ``_repr_html_`` on its own; an exception there shows a traceback in
    place of the result, which is worse than a card without its charts.
    """
    try:
        return loader(), None
    except (OmnilabError, psycopg.Error) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"could not read the tracking store: {reason}"


class Figure:
    """Charts to show in a notebook (``_repr_html_``) or save as a standalone HTML file."""

    def __init__(self, svgs: Sequence[str], legend: str = "") -> None:
        self.svgs = list(svgs)
        self.legend = legend

    def _repr_html_(self) -> str:
        if not self.svgs:
            return '<div class="omnilab ol-muted">no metrics to plot</div>'
        return f'{CSS}<div class="omnilab">{self.legend}{charts_html(self.svgs)}</div>'

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the charts as a self-contained HTML page (or one ``.svg`` for one chart)."""
        with open(path, "w", encoding="utf-8") as fh:
            if os.fspath(path).endswith(".svg") and len(self.svgs) == 1:
                fh.write(self.svgs[0])
            else:
                fh.write(f"<!doctype html><meta charset=utf-8>{self._repr_html_()}")

    def __repr__(self) -> str:
        return f"<Figure: {len(self.svgs)} chart(s)>"
