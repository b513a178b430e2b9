"""``Run``: what ``omnilab.run`` returns and ``omnilab runs show`` displays: a run as
recorded, with what a user does with it (its metrics, artifacts, promotion, diff).

It sits above the tracking store and the promotions (a layer of its own, below the
notebook and the terminal that show it), so that ``Run.promote()`` imports downwards;
only its display hooks reach up into :mod:`omnilab.notebook`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from omnilab import artifacts
from omnilab.artifacts import ArtifactNotFound, UnknownArtifact
from omnilab.errors import OmnilabError
from omnilab.tracking.records import ArtifactRecord, MetricPoint, MetricSummary, RunRecord

if TYPE_CHECKING:
    import pandas as pd

    from omnilab.config import Settings
    from omnilab.notebook.charts import Figure
    from omnilab.progress import Reporter
    from omnilab.promote.models import PromotionResult, RunDiff
    from omnilab.promote.records import PromotionRecord
    from omnilab.tracking.queries import ChartSeries
    from omnilab.tracking.store import TrackingStore


class RunFailed(OmnilabError):
    """Raised by :meth:`Run.raise_for_status` for a run that did not succeed."""


class Run:
    """One run of an experiment, as recorded.

    Attribute access is cheap (the record is in memory); metric history and artifacts
    are read from the tracking store on first use and then kept.
    """

    def __init__(
        self,
        record: RunRecord,
        *,
        metric_summaries: list[MetricSummary] | None = None,
        artifacts: list[ArtifactRecord] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.record = record
        self._summaries = metric_summaries
        self._artifacts = artifacts
        self._history: list[MetricPoint] | None = None
        self._series: dict[str, ChartSeries] | None = None  # metrics reduced for charts
        self._settings = settings
        #: Set by ``omnilab.run(..., promote=True)``: what became of the promotion.
        self.promotion: PromotionResult | None = None

    # -- loading ----------------------------------------------------------------------

    @classmethod
    def load(cls, ref: str, *, settings: Settings | None = None) -> Run:
        """A past run by id or unique id prefix."""
        from omnilab.tracking.store import TrackingStore

        with TrackingStore.open(settings) as store:
            return cls.from_store(store, store.get_run(ref), settings=settings)

    @classmethod
    def from_store(
        cls, store: TrackingStore, record: RunRecord, *, settings: Settings | None = None
    ) -> Run:
        return cls(
            record,
            metric_summaries=store.metric_summaries(record.id),
            artifacts=store.artifacts(record.id),
            settings=settings,
        )

    def _store(self) -> TrackingStore:
        from omnilab.tracking.store import TrackingStore

        return TrackingStore.open(self._settings)

    def refresh(self) -> Run:
        with self._store() as store:
            fresh = Run.from_store(store, store.get_run(self.id), settings=self._settings)
        self.__dict__.update(fresh.__dict__)
        return self

    # -- the record ---------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def short_id(self) -> str:
        return self.record.short_id

    @property
    def experiment(self) -> str:
        return self.record.experiment

    @property
    def name(self) -> str | None:
        return self.record.name

    @property
    def tags(self) -> list[str]:
        return list(self.record.tags)

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def ok(self) -> bool:
        return self.record.status == "succeeded"

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.record.params)

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.record.summary or {})

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def timings(self) -> dict[str, Any]:
        return dict(self.record.timings)

    @property
    def duration(self) -> float | None:
        return self.record.duration

    @property
    def run_dir(self) -> Path | None:
        return Path(self.record.run_dir) if self.record.run_dir else None

    @property
    def artifacts_dir(self) -> Path | None:
        return self.run_dir / "artifacts" if self.run_dir else None

    @property
    def logs_dir(self) -> Path | None:
        return self.run_dir / "logs" if self.run_dir else None

    # -- metrics and artifacts ------------------------------------------------------------

    @property
    def metric_summaries(self) -> list[MetricSummary]:
        if self._summaries is None:
            with self._store() as store:
                self._summaries = store.metric_summaries(self.id)
        return self._summaries

    @property
    def latest_metrics(self) -> dict[str, float]:
        """Last value of each metric (at its highest step)."""
        return {m.key: m.last for m in self.metric_summaries}

    def metric_history(self, key: str | None = None) -> list[MetricPoint]:
        """Every logged point, ordered by metric and step."""
        if self._history is None:
            with self._store() as store:
                self._history = store.metrics(self.id)
        return [p for p in self._history if key is None or p.key == key]

    @property
    def artifacts(self) -> list[ArtifactRecord]:
        if self._artifacts is None:
            with self._store() as store:
                self._artifacts = store.artifacts(self.id)
        return self._artifacts

    @property
    def artifacts_url(self) -> str | None:
        """Where the run's artifacts and log were uploaded when it ended; None: they are
        in :attr:`run_dir`, on the host that ran it."""
        return self.record.artifacts_url

    def open(self, path: str) -> BinaryIO:
        """One artifact (``path`` as :attr:`artifacts` lists it) as a binary file, read
        from wherever the run's files are kept: the artifact store it uploaded them to,
        else its folder. Its sha256 is checked once it is read to the end
        (:class:`~omnilab.artifacts.ChecksumMismatch`). Use it in a ``with`` block."""
        recorded = self._recorded(path)
        wanted = recorded.path
        store = artifacts.run_store(self.record.artifacts_url, self.record.run_dir)
        if store is None:
            raise ArtifactNotFound(f"run {self.short_id} has no folder and no artifact store")
        try:
            raw = store.open(artifacts.artifact_key(self.id, wanted))
        except ArtifactNotFound:
            raise ArtifactNotFound(self._missing(wanted)) from None
        return io.BufferedReader(
            artifacts.Verified(raw, recorded.sha256, f"{wanted} of run {self.short_id}")
        )

    def artifact(self, path: str) -> bytes:
        """One artifact's content (see :meth:`open`), checked against its sha256."""
        with self.open(path) as fh:
            return fh.read()

    def save(self, path: str, dest: str | Path) -> Path:
        """Save one artifact to the file ``dest`` (a folder: the artifact's name in it),
        checked against its recorded sha256; returns where it went."""
        recorded = self._recorded(path)
        target = Path(dest)
        if target.is_dir():
            target = target / Path(recorded.path).name
        self._fetch([(recorded, target)])
        return target

    def save_all(self, folder: str | Path) -> list[Path]:
        """Save every artifact under ``folder``, by its path, many at once, each checked
        against its recorded sha256; returns where they went."""
        base = Path(folder)
        items = [(a, base / a.path) for a in self.artifacts]
        self._fetch(items)
        return [target for _, target in items]

    def _recorded(self, path: str) -> ArtifactRecord:
        wanted = artifacts.check_path(path)
        recorded = next((a for a in self.artifacts if a.path == wanted), None)
        if recorded is None:
            known = ", ".join(a.path for a in self.artifacts[:5])
            more = ", ..." if len(self.artifacts) > 5 else ""
            has = f"its artifacts: {known}{more}" if known else "it has none"
            raise UnknownArtifact(f"run {self.short_id} has no artifact {wanted!r} ({has})")
        return recorded

    def _fetch(self, items: list[tuple[ArtifactRecord, Path]]) -> None:
        store = artifacts.run_store(self.record.artifacts_url, self.record.run_dir)
        if store is None:
            raise ArtifactNotFound(f"run {self.short_id} has no folder and no artifact store")
        wanted = [
            artifacts.Wanted(artifacts.artifact_key(self.id, a.path), target, a.sha256, a.size)
            for a, target in items
        ]
        try:
            store.get(wanted)
        except ArtifactNotFound:
            if self.record.artifacts_url:
                raise  # names the object that is gone
            raise ArtifactNotFound(self._missing(items[0][0].path)) from None

    def _missing(self, path: str) -> str:
        if self.record.artifacts_url:
            return (
                f"artifact {path!r} of run {self.short_id} is recorded but no longer in "
                f"{self.record.artifacts_url}"
            )
        host = (self.record.environment or {}).get("hostname") or "the host that ran it"
        return (
            f"artifact {path!r} of run {self.short_id} is not on this host: the run kept "
            f"its files in {self.record.run_dir} on {host} (OMNILAB_ARTIFACTS_URL, a shared "
            "folder or s3://bucket/prefix, puts them where every host reads them)"
        )

    # -- notebooks (omnilab.notebook) ------------------------------------------------------

    @property
    def metrics(self) -> pd.DataFrame:
        """Metrics as a pandas DataFrame: one row per step, one column per metric.

        Where a metric was logged twice at one step, the later value is kept; every
        point, with timestamps, is in :attr:`metric_points`. Needs pandas
        (``pip install 'omnilab[notebook]'``).
        """
        from omnilab.notebook.frames import wide_frame

        return wide_frame(self.metric_history())

    @property
    def metric_points(self) -> pd.DataFrame:
        """Every logged point as a DataFrame: key, step, value, timestamp."""
        from omnilab.notebook.frames import points_frame

        return points_frame(self.metric_history())

    def plot(self, *keys: str) -> Figure:
        """Charts of ``keys`` over steps (every metric when none), one chart per metric."""
        from omnilab.notebook.compare import plot_run

        return plot_run(self, *keys)

    def _repr_html_(self) -> str:
        from omnilab.notebook.cards import run_card

        return run_card(self)

    # -- outcome --------------------------------------------------------------------------

    def raise_for_status(self) -> Run:
        """Return the run if it succeeded; raise :class:`RunFailed` otherwise."""
        if not self.ok:
            detail = (self.error or "").strip().splitlines()
            reason = detail[-1] if detail else self.status
            raise RunFailed(f"run {self.short_id} {self.status}: {reason}")
        return self

    # -- promotion --------------------------------------------------------------------------

    @property
    def data(self) -> dict[str, Any] | None:
        """Where the run's stack data is kept for promotion, and in which state
        (kept, promoted, discarded, expired); None when it kept none."""
        return (self.record.stack or {}).get("data")

    def promote(
        self,
        *,
        dry_run: bool = False,
        on_conflict: str = "fail",
        actor: str | None = None,
        reporter: Reporter | None = None,
    ) -> PromotionResult:
        """Promote what the experiment declares into production (see ``omnilab promote``)."""
        from omnilab.promote import promote

        result = promote(
            self,
            dry_run=dry_run,
            on_conflict=on_conflict,
            actor=actor,
            settings=self._settings,
            reporter=reporter,
        )
        if not dry_run:
            self.refresh()
        return result

    def diff(self, *, reporter: Reporter | None = None) -> RunDiff:
        """Per promoted item: the rows, keys or points the run adds, changes and removes
        against production, with examples, and whether production changed since the
        fork; a table in a notebook (``.to_pandas()`` for a frame). Changes nothing."""
        from omnilab.promote import diff

        return diff(self, settings=self._settings, reporter=reporter)

    def discard(self, *, reporter: Reporter | None = None) -> None:
        """Give up promoting this run: its kept stack data is removed."""
        from omnilab.progress import Reporter
        from omnilab.promote import retention

        with self._store() as store:
            retention.discard(store, self.id, reporter or Reporter())
        self.refresh()

    @property
    def promotions(self) -> list[PromotionRecord]:
        """This run's promotions, newest first."""
        from omnilab.promote.records import PromotionStore

        with self._store() as store:
            return PromotionStore(store).list(run_id=self.id, limit=100)

    def to_dict(self) -> dict[str, Any]:
        data = self.record.model_dump(mode="json")
        data["metrics"] = {m.key: m.model_dump(mode="json") for m in self.metric_summaries}
        data["artifacts"] = [a.model_dump(mode="json") for a in self.artifacts]
        return data

    def __repr__(self) -> str:
        return f"<Run {self.short_id} {self.experiment} {self.status}>"
