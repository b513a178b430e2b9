"""Runs and metrics as pandas DataFrames.

pandas is an optional dependency (``pip install 'omnilab[notebook]'``): omnilab runs,
records and displays runs without it, and only these conversions need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omnilab.errors import OmnilabError

if TYPE_CHECKING:
    import pandas as pd

    from omnilab.recorded import Run
    from omnilab.tracking.records import MetricPoint


class MissingDependency(OmnilabError):
    """An optional dependency a feature needs is not installed."""


def require_pandas() -> None:
    """A one-line error instead of an ImportError; each caller then imports pandas itself
    (and so sees its types)."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "this needs pandas, which is not installed: pip install 'omnilab[notebook]'"
        ) from None


def points_frame(points: Sequence[MetricPoint]) -> pd.DataFrame:
    """Every logged point, one row each: key, step, value, timestamp."""
    require_pandas()
    import pandas as pd

    frame = pd.DataFrame(
        {
            "key": [p.key for p in points],
            "step": [p.step for p in points],
            "value": [p.value for p in points],
            "timestamp": [p.timestamp for p in points],
        }
    )
    return frame.astype({"key": "string", "step": "int64", "value": "float64"})


def wide_frame(points: Sequence[MetricPoint]) -> pd.DataFrame:
    """One row per step, one column per metric; where a metric was logged several times
    at the same step, the last value logged is kept (as ``latest_metrics`` does)."""
    require_pandas()
    import pandas as pd

    long = points_frame(points)
    if long.empty:
        return pd.DataFrame(index=pd.Index([], name="step", dtype="int64"))
    wide = (
        long.sort_values(["key", "step", "timestamp"], kind="stable")
        .drop_duplicates(["key", "step"], keep="last")
        .pivot(index="step", columns="key", values="value")
    )
    wide.columns = pd.Index([str(c) for c in wide.columns], name=None)
    return wide


def runs_frame(runs: Sequence[Run], latest: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per run with MLflow-style columns: ``params.x``, ``summary.y``, ``metrics.z``."""
    require_pandas()
    import pandas as pd

    rows = []
    for run in runs:
        r = run.record
        row: dict[str, Any] = {
            "id": r.id,
            "experiment": r.experiment,
            "status": r.status,
            "created_at": r.created_at,
            "duration_s": r.duration,
        }
        row.update({f"params.{k}": v for k, v in r.params.items()})
        row.update({f"summary.{k}": v for k, v in (r.summary or {}).items()})
        row.update({f"metrics.{k}": v for k, v in latest.get(r.id, {}).items()})
        rows.append(row)
    columns = ["id", "experiment", "status", "created_at", "duration_s"]
    return pd.DataFrame(rows, columns=None if rows else columns)


def diff_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """``run.diff()`` as a frame: one row per promoted item, its added, changed and
    removed counts, their examples, and whether production changed since the fork."""
    require_pandas()
    import pandas as pd

    return pd.DataFrame(list(rows))
