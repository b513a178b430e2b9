"""``omnilab.runs()``: past runs as a table that is also a list of :class:`Run`.

A list composes with the rest of the API (``omnilab.compare(omnilab.runs(...)[:3])``,
``[r.summary for r in ...]``); the table is how it shows in a notebook; ``to_pandas()``
is there for the analysis a table cannot do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, SupportsIndex, get_args, overload

from omnilab.errors import UsageError
from omnilab.experiment import Experiment
from omnilab.notebook.html import CSS, badge, cell, esc, seconds
from omnilab.recorded import Run
from omnilab.tracking.queries import DisplayStore
from omnilab.tracking.records import RunStatus

if TYPE_CHECKING:
    import pandas as pd

    from omnilab.config import Settings

#: Columns shown per group (params, summary, metrics); the rest are in ``to_pandas()``.
MAX_COLUMNS = 8
STATUSES: tuple[str, ...] = get_args(RunStatus)


def _union(dicts: Iterable[dict[str, Any]]) -> list[str]:
    """Keys in order of first appearance: the newest run's params lead the columns."""
    seen: dict[str, None] = {}
    for d in dicts:
        for key in d:
            seen.setdefault(key, None)
    return list(seen)


class RunTable(list[Run]):
    """Runs, newest first; shows as a table in a notebook."""

    def __init__(
        self,
        runs: Iterable[Run] = (),
        *,
        latest: dict[str, dict[str, float]] | None = None,
        query: str = "",
    ) -> None:
        super().__init__(runs)
        #: Last value of each metric per run id, read with the runs (one query for all).
        self.latest = latest if latest is not None else {}
        self.query = query

    def to_pandas(self) -> pd.DataFrame:
        """One row per run: id, experiment, status, created_at, duration_s, then
        ``params.*``, ``summary.*`` and ``metrics.*`` (last value) columns."""
        from omnilab.notebook.frames import runs_frame

        return runs_frame(self, self.latest)

    @overload
    def __getitem__(self, index: SupportsIndex) -> Run: ...

    @overload
    def __getitem__(self, index: slice) -> RunTable: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Run | RunTable:
        """A slice is a table too: ``omnilab.runs()[:5]`` shows as one."""
        if isinstance(index, slice):
            return RunTable(super().__getitem__(index), latest=self.latest, query=self.query)
        return super().__getitem__(index)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self]

    def columns(self) -> list[tuple[str, list[str], list[dict[str, Any]]]]:
        """(group, keys, one dict per run) for params, summary and metrics (last values):
        the table's columns, as the notebook and the web UI's runs table show them."""
        params = [r.params for r in self]
        summaries = [r.summary for r in self]
        metrics = [self.latest.get(r.id, {}) for r in self]
        return [
            ("params", _union(params), params),
            ("summary", _union(summaries), summaries),
            ("metrics", sorted(_union(metrics)), metrics),
        ]

    def _repr_html_(self) -> str:
        if not self:
            said = f"no runs match{self.query}" if self.query else "no runs recorded yet"
            return f'{CSS}<div class="omnilab ol-muted">{esc(said)}</div>'
        groups = self.columns()
        top = '<tr><th colspan="5"></th>'
        sub = "<tr><th>id</th><th>experiment</th><th>status</th><th>created</th><th>duration</th>"
        hidden = []
        for name, keys, _ in groups:
            shown = keys[:MAX_COLUMNS]
            hidden += [f"{name}.{k}" for k in keys[MAX_COLUMNS:]]
            if shown:
                top += f'<th colspan="{len(shown)}" class="ol-muted">{esc(name)}</th>'
                sub += "".join(f"<th>{esc(k)}</th>" for k in shown)
        rows = []
        for i, run in enumerate(self):
            r = run.record
            created = r.created_at.astimezone().strftime("%m-%d %H:%M:%S") if r.created_at else "-"
            # A name and tags go under the id: the run's own labels, one cell.
            labels = "".join(
                f'<br><span class="ol-muted">{esc(text)}</span>'
                for text in (r.name, ", ".join(r.tags))
                if text
            )
            row = (
                f'<tr><td><code title="{esc(r.id)}">{esc(r.short_id)}</code>{labels}</td>'
                f"<td>{esc(r.experiment)}</td><td>{badge(r.status)}</td>"
                f'<td>{esc(created)}</td><td class="ol-num">{esc(seconds(r.duration))}</td>'
            )
            for _, keys, values in groups:
                row += "".join(cell(values[i].get(k)) for k in keys[:MAX_COLUMNS])
            rows.append(row + "</tr>")
        note = f"{len(self)} run{'s' if len(self) != 1 else ''}{self.query}, newest first"
        if hidden:
            note += f"; not shown: {', '.join(hidden)} (see .to_pandas())"
        return (
            f'{CSS}<div class="omnilab"><table>{top}</tr>{sub}</tr>{"".join(rows)}</table>'
            f'<div class="ol-muted">{esc(note)}</div></div>'
        )

    def __repr__(self) -> str:
        lines = [f"<RunTable: {len(self)} runs{self.query}>"]
        lines += [f"  {r.short_id}  {r.experiment}  {r.status}" for r in self[:20]]
        if len(self) > 20:
            lines.append(f"  ... {len(self) - 20} more")
        return "\n".join(lines)


def runs(
    experiment: str | type[Experiment] | None = None,
    status: str | None = None,
    *,
    tag: str | None = None,
    limit: int = 100,
    offset: int = 0,
    settings: Settings | None = None,
) -> RunTable:
    """Past runs, newest first, as a :class:`RunTable` (a list of :class:`Run`).

    ``experiment`` is a name or an Experiment class; ``status`` one of queued, running,
    succeeded, failed, cancelled; ``tag`` one of the runs' tags. Runs whose process died
    without recording an outcome are marked failed first, as ``omnilab runs ls`` does.
    """
    from omnilab.tracking.store import TrackingStore

    if isinstance(experiment, type) and issubclass(experiment, Experiment):
        experiment = experiment.experiment_name()
    if experiment is not None and not isinstance(experiment, str):
        raise UsageError(
            f"experiment={experiment!r}: give an experiment name or an Experiment class"
        )
    if status is not None and status not in STATUSES:
        raise UsageError(f"status={status!r}: choose one of {', '.join(STATUSES)}")
    if limit < 1 or offset < 0:
        raise UsageError("limit must be at least 1 and offset at least 0")
    with TrackingStore.open(settings) as store:
        store.reconcile_orphans()
        records = store.list_runs(
            experiment=experiment,
            status=status,
            tags=[tag] if tag else None,
            limit=limit,
            offset=offset,
        )
        latest = DisplayStore(store).latest_values([r.id for r in records])
    given = (("experiment", experiment), ("status", status), ("tag", tag))
    filters = [f"{k}={v}" for k, v in given if v]
    return RunTable(
        (Run(r, settings=settings) for r in records),
        latest=latest,
        query=f" ({', '.join(filters)})" if filters else "",
    )
