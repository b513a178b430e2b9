"""``omnilab.compare(runs)``: runs side by side, and their metrics on shared charts.

What differs is what matters in a comparison: rows whose values differ between runs are
in bold, and each run is labelled by the params that set it apart (``cache_kb=512``)
rather than by its id alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from omnilab.errors import UsageError
from omnilab.notebook.charts import MAX_CHARTS, Figure, charts_html, load_series, metric_svgs
from omnilab.notebook.html import CSS, badge, cell, compact, esc, seconds
from omnilab.notebook.svg import PALETTE
from omnilab.recorded import Run
from omnilab.tracking.queries import DisplayStore

if TYPE_CHECKING:
    import pandas as pd

    from omnilab.config import Settings
    from omnilab.tracking.queries import ChartSeries

Row = tuple[str, str, list[Any]]  # group, name, one value per run


def differs(values: Sequence[Any]) -> bool:
    """Whether a row of a comparison is marked: its values are not all the same."""
    return any(v != values[0] for v in values[1:])


class Comparison:
    """Runs side by side: a table (rows = what was recorded, columns = runs) and charts."""

    def __init__(
        self,
        runs: Sequence[Run],
        latest: dict[str, dict[str, float]],
        series: Sequence[dict[str, ChartSeries]],
    ) -> None:
        self.runs = list(runs)
        self.latest = latest
        self._series = list(series)

    # -- what is compared -------------------------------------------------------------

    @property
    def metric_keys(self) -> list[str]:
        return sorted({k for r in self.runs for k in self.latest.get(r.id, {})})

    def rows(self) -> list[Row]:
        runs = self.runs
        rows: list[Row] = [
            *([("run", "name", [r.name for r in runs])] if any(r.name for r in runs) else []),
            *(
                [("run", "tags", [", ".join(r.tags) for r in runs])]
                if any(r.tags for r in runs)
                else []
            ),
            ("run", "experiment", [r.experiment for r in runs]),
            ("run", "status", [r.status for r in runs]),
            ("run", "duration_s", [r.duration for r in runs]),
        ]
        groups = (
            ("params", [r.params for r in runs], None),
            ("summary", [r.summary for r in runs], None),
            ("metrics", [self.latest.get(r.id, {}) for r in runs], self.metric_keys),
        )
        for group, dicts, ordered in groups:
            keys = ordered or list(dict.fromkeys(k for d in dicts for k in d))
            rows += [(group, k, [d.get(k) for d in dicts]) for k in keys]
        return rows

    @property
    def differing_params(self) -> dict[str, list[Any]]:
        """The params whose values are not the same in every run."""
        return {n: v for g, n, v in self.rows() if g == "params" and differs(v)}

    def labels(self) -> list[str]:
        """Each run's short id and the params that set it apart from the others."""
        differing = self.differing_params
        labels = []
        for i, run in enumerate(self.runs):
            parts = [f"{k}={compact(v[i], 24)}" for k, v in list(differing.items())[:3]]
            labels.append(" ".join([run.short_id, *parts]))
        return labels

    # -- outputs ------------------------------------------------------------------------

    def to_pandas(self) -> pd.DataFrame:
        """Rows ``group.name`` (``params.k``, ``summary.k``, ``metrics.k``...), one column
        per run id."""
        from omnilab.notebook.frames import require_pandas

        require_pandas()
        import pandas as pd

        rows = self.rows()
        return pd.DataFrame(
            [values for _, _, values in rows],
            index=pd.Index([f"{g}.{n}" for g, n, _ in rows]),
            columns=[r.id for r in self.runs],
            dtype=object,
        )

    def plot(self, *keys: str) -> Figure:
        """Charts of ``keys`` (every metric when none), one per metric, runs overlaid."""
        known = self.metric_keys
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise UsageError(
                f"no metric {', '.join(map(repr, unknown))} in these runs "
                f"(they have: {', '.join(known) or 'no metrics'})"
            )
        return Figure(self._svgs(list(keys) or known), self._legend())

    def _svgs(self, keys: Sequence[str]) -> list[str]:
        return metric_svgs(list(zip(self.labels(), self._series, strict=True)), keys)

    def _legend(self) -> str:
        items = "".join(
            f'<span><i class="ol-swatch" style="background:{PALETTE[i % len(PALETTE)]}"></i>'
            f"{esc(label)}</span>"
            for i, label in enumerate(self.labels())
        )
        return f'<div class="ol-legend">{items}</div>'

    def _table(self) -> str:
        head = "<tr><th></th>" + "".join(
            f'<th><i class="ol-swatch" style="background:{PALETTE[i % len(PALETTE)]}"></i>'
            f'<code title="{esc(r.id)}">{esc(r.short_id)}</code></th>'
            for i, r in enumerate(self.runs)
        )
        body, group = [], None
        for g, name, values in self.rows():
            if g != group:
                group = g
                body.append(
                    f'<tr><th colspan="{len(self.runs) + 1}" class="ol-muted">{esc(g)}</th></tr>'
                )
            marked = name != "duration_s" and len(self.runs) > 1 and differs(values)
            diff = ' class="ol-diff"' if marked else ""
            if name == "status":
                cells = "".join(f"<td>{badge(v)}</td>" for v in values)
            elif name == "duration_s":
                cells = "".join(f'<td class="ol-num">{esc(seconds(v))}</td>' for v in values)
                name = "duration"
            else:
                cells = "".join(cell(v) for v in values)
            body.append(f"<tr{diff}><th>{esc(name)}</th>{cells}</tr>")
        return f"<table>{head}</tr>{''.join(body)}</table>"

    def _repr_html_(self) -> str:
        keys = self.metric_keys
        charts = charts_html(self._svgs(keys[:MAX_CHARTS]), keys[MAX_CHARTS:])
        note = '<div class="ol-muted">bold rows differ between runs</div>'
        if charts:
            charts = self._legend() + charts
        return f'{CSS}<div class="omnilab">{self._table()}{note}{charts}</div>'

    def __repr__(self) -> str:
        return f"<Comparison of {len(self.runs)} runs: {', '.join(self.labels())}>"


def plot_run(run: Run, *keys: str) -> Figure:
    """``Run.plot``: a comparison of one run, so that its charts look like ``compare``'s."""
    return Comparison([run], {run.id: run.latest_metrics}, load_series([run])).plot(*keys)


def compare(
    runs: Iterable[Run | str], *, settings: Settings | None = None, charts: bool = True
) -> Comparison:
    """Compare runs (``Run`` objects or run ids/prefixes): a side-by-side table of their
    params, summaries and last metric values, and their metrics overlaid, one chart per
    metric. ``omnilab.compare(omnilab.runs(experiment="Sweep"))`` compares a sweep.

    ``charts=False`` skips reading the metrics' series (``omnilab runs compare`` shows
    the table only)."""
    from omnilab.tracking.store import TrackingStore

    if isinstance(runs, Run | str):
        runs = [runs]
    items = list(runs)
    if not items:
        raise UsageError("compare() needs at least one run (a Run or a run id)")
    for item in items:
        if not isinstance(item, Run | str):
            raise UsageError(f"compare() takes Run objects or run ids, not {item!r}")
    with TrackingStore.open(settings) as store:
        resolved = [
            item if isinstance(item, Run) else Run(store.get_run(item), settings=settings)
            for item in items
        ]
        unique = list({r.id: r for r in resolved}.values())
        latest = DisplayStore(store).latest_values([r.id for r in unique])
        series = load_series(unique, store=store) if charts else [{} for _ in unique]
    return Comparison(unique, latest, series)
