"""What a notebook shows of runs: the card, its charts, run.metrics, runs(), compare().

Real runs on real stacks, recorded in the session's PostgreSQL.
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import omnilab
from omnilab import Experiment, Params, Redis, Run, RunTable, UsageError
from omnilab.notebook import MissingDependency, NotebookReporter
from omnilab.progress import QuietReporter
from omnilab.tracking.queries import DisplayStore
from omnilab.tracking.store import TrackingStore
from tests.support import free_port, stack_processes, wait_until


class Curves(Experiment):
    """Metrics with a known shape: 10,000 points of loss, spikes, a sparse metric."""

    services = [Redis()]
    gpu = False
    name = "NotebookCurves"

    class Params(Params):
        n: int = 10_000
        rate: float = 5.0
        label: str = "plain"

    def run(self, ctx):  # type: ignore[no-untyped-def]
        p = ctx.params
        for i in range(p.n):
            value = math.exp(-i / p.n * p.rate)
            if i == 4321:
                value = 7.5  # a one-point spike the chart must keep
            if i == 1234:
                value = -2.0
            ctx.log_metric("loss", value, step=i)
            if i % 1000 == 0:
                ctx.log_metric("accuracy", 1 - value / 2, step=i)
        ctx.log_metric("odd", float("nan"), step=0)
        ctx.log_metric("odd", 1.0, step=1)
        time.sleep(0.002)  # points are ordered by timestamp: make "later" unambiguous
        ctx.log_metric("odd", 2.0, step=1)  # the same step twice: the later one counts
        (ctx.artifacts_dir / "report <b>.txt").write_text("hello")
        return {"label": p.label, "final_loss": value}


def _run(**params: object) -> Run:
    run = omnilab.run(Curves, params=params, reporter=QuietReporter())
    return run.raise_for_status()


@pytest.fixture(scope="module")
def curves(tests_tmp: Path, tracking_url: str) -> list[Run]:
    """Two runs of Curves, made once (in a folder of their own) for tests that read them."""
    home = Path(tempfile.mkdtemp(prefix="curves-", dir=tests_tmp))
    (home / "tmp").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        mp.setenv("TMPDIR", str(home / "tmp"))
        mp.setattr(tempfile, "tempdir", None)
        mp.setenv("OMNILAB_STATE_DIR", str(home / "state"))
        mp.setenv("OMNILAB_TRACKING_URL", tracking_url)
        runs = [_run(rate=5.0), _run(rate=2.0, label="<script>alert(1)</script>")]
    assert wait_until(lambda: not stack_processes(home / "tmp"))
    return runs


# -- the run card ----------------------------------------------------------------------


def test_the_card_shows_everything_of_a_run(curves: list[Run]) -> None:
    run = Run.load(curves[0].id)
    html = run._repr_html_()
    assert run.id in html and run.short_id in html
    assert "succeeded" in html and "NotebookCurves" in html
    for text in ("rate", "5.0", "final_loss", "stack start", "experiment", "teardown", "redis"):
        assert text in html, text
    # one chart per metric
    assert html.count("<svg") == 3
    assert all(f">{k}</text>" in html for k in ("loss", "accuracy", "odd"))
    assert "report &lt;b&gt;.txt" in html  # the artifact, its name escaped


def test_artifact_links_open_from_the_notebook_folder(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(n=10)
    # Jupyter resolves relative links against the notebook's folder (the kernel's cwd).
    href = f"runs/{run.id}/artifacts/report%20%3Cb%3E.txt"
    assert f'href="{href}"' in Run.load(run.id)._repr_html_()
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    hrefs = re.findall(r'href="([^"]+)"', Run.load(run.id)._repr_html_())
    assert hrefs == [(workdir / "runs" / run.id / "artifacts" / "report <b>.txt").as_uri()]


def test_user_data_is_escaped(curves: list[Run]) -> None:
    html = curves[1]._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_failed_run_shows_its_error(workdir: Path) -> None:
    class Broken(Experiment):
        gpu = False

        def run(self, ctx):  # type: ignore[no-untyped-def]
            ctx.log_metric("x", 1.0)
            raise ValueError("bad <value>")

    run = omnilab.run(Broken, reporter=QuietReporter())
    html = run._repr_html_()
    assert "failed" in html and "ValueError: bad &lt;value&gt;" in html
    assert "<details>" in html  # the whole traceback, folded


def test_the_chart_keeps_the_shape_of_10000_points(curves: list[Run]) -> None:
    with TrackingStore.open() as store:
        series = DisplayStore(store).chart_series(curves[0].id, buckets=300)
    loss = series["loss"]
    assert loss.total == 10_000
    assert len(loss.steps) <= 4 * 300  # first, min, max, last per pixel column
    true = [p.value for p in curves[0].metric_history("loss")]
    assert max(loss.values) == 7.5 and min(loss.values) == -2.0  # spikes survive
    assert loss.values[0] == true[0] and loss.values[-1] == true[-1]
    assert loss.steps[0] == 0 and loss.steps[-1] == 9_999
    assert loss.steps == sorted(loss.steps)
    # a sparse metric comes back whole; a NaN is left out of the drawing only
    assert series["accuracy"].steps == [float(s) for s in range(0, 10_000, 1000)]
    assert series["odd"].total == 2 and series["odd"].values == [1.0, 2.0]


def test_the_card_survives_an_unreachable_store(
    curves: list[Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = Run.load(curves[0].id)  # summaries and artifacts in hand, series not yet
    listed = omnilab.runs(experiment=Curves)[-1]  # nothing but the record in hand
    monkeypatch.setenv("OMNILAB_TRACKING_URL", f"postgresql://x@127.0.0.1:{free_port()}/none")
    for run in (loaded, listed):
        html = run._repr_html_()  # Jupyter calls this itself: it must not raise
        assert "succeeded" in html and "rate" in html
        assert html.count("could not read the tracking store: cannot reach") == 1
    assert "<th>loss</th>" in loaded._repr_html_()


def test_plot_draws_the_metrics_asked_for(curves: list[Run], tmp_path: Path) -> None:
    figure = curves[0].plot("loss")
    assert len(figure.svgs) == 1 and "<polyline" in figure.svgs[0]
    assert len(curves[0].plot().svgs) == 3
    with pytest.raises(UsageError, match=r"no metric 'nope'.*accuracy, loss, odd"):
        curves[0].plot("nope")
    figure.save(str(tmp_path / "loss.svg"))
    assert (tmp_path / "loss.svg").read_text().startswith("<svg")


# -- DataFrames --------------------------------------------------------------------------


def test_run_metrics_is_a_dataframe_by_step(curves: list[Run]) -> None:
    frame = curves[0].metrics
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["accuracy", "loss", "odd"]
    assert frame.index.name == "step" and len(frame) == 10_000
    assert frame.loc[4321, "loss"] == 7.5
    assert frame.loc[1, "odd"] == 2.0  # the later value at a repeated step
    assert math.isnan(frame.loc[0, "odd"]) and math.isnan(frame.loc[1, "accuracy"])
    points = curves[0].metric_points
    assert list(points.columns) == ["key", "step", "value", "timestamp"]
    assert len(points) == 10_000 + 10 + 3


def test_without_pandas_the_error_says_what_to_install(
    curves: list[Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(MissingDependency, match=r"pip install 'omnilab\[notebook\]'"):
        _ = curves[0].metrics
    # everything else works without it
    assert "<svg" in Run.load(curves[0].id)._repr_html_()
    assert omnilab.runs(experiment=Curves)._repr_html_()


# -- runs() ----------------------------------------------------------------------------


def test_runs_queries_past_runs_as_a_table(curves: list[Run]) -> None:
    table = omnilab.runs(experiment=Curves)
    ids = table.ids
    assert curves[1].id in ids and curves[0].id in ids
    assert ids.index(curves[1].id) < ids.index(curves[0].id)  # newest first
    assert all(r.experiment == "NotebookCurves" for r in table)
    assert omnilab.runs(experiment="NotebookCurves").ids == ids  # by name too
    assert curves[0].id not in omnilab.runs(experiment=Curves, status="failed").ids
    assert len(omnilab.runs(experiment=Curves, limit=1)) == 1
    assert isinstance(table[:1], RunTable) and table[:1].ids == ids[:1]
    html = table._repr_html_()
    assert "succeeded" in html and "final_loss" in html and "rate" in html
    assert table.latest[curves[0].id]["odd"] == 2.0
    frame = table.to_pandas()
    row = frame.set_index("id").loc[curves[1].id]
    assert row["params.rate"] == 2.0 and row["metrics.odd"] == 2.0
    assert row["summary.label"] == "<script>alert(1)</script>"


def test_runs_refuses_bad_filters_clearly() -> None:
    with pytest.raises(UsageError, match="status='done': choose one of queued, running"):
        omnilab.runs(status="done")
    with pytest.raises(UsageError, match="limit must be at least 1"):
        omnilab.runs(limit=0)
    with pytest.raises(UsageError, match="experiment name or an Experiment class"):
        omnilab.runs(experiment=42)  # type: ignore[arg-type]
    assert "no runs match (experiment=NoSuchThing)" in (
        omnilab.runs(experiment="NoSuchThing")._repr_html_()
    )


# -- compare() -------------------------------------------------------------------------


def test_compare_puts_runs_side_by_side(curves: list[Run]) -> None:
    first, second = curves
    comparison = omnilab.compare([first, second.id[:10]])  # Run objects or id prefixes
    assert [r.id for r in comparison.runs] == [first.id, second.id]
    assert comparison.differing_params == {
        "rate": [5.0, 2.0],
        "label": ["plain", "<script>alert(1)</script>"],
    }
    assert comparison.labels()[0].startswith(f"{first.short_id} rate=5.0")
    html = comparison._repr_html_()
    assert "<script>" not in html
    assert html.count("<svg") == 3  # one chart per metric...
    assert html.count("<polyline") >= 2 * 2  # ...with both runs drawn in each
    assert 'class="ol-diff"><th>rate</th>' in html
    frame = comparison.to_pandas()
    assert list(frame.columns) == [first.id, second.id]
    assert frame.loc["params.rate"].tolist() == [5.0, 2.0]
    assert frame.loc["metrics.odd"].tolist() == [2.0, 2.0]
    assert len(comparison.plot("loss").svgs) == 1


def test_compare_refuses_bad_input_clearly(curves: list[Run]) -> None:
    with pytest.raises(UsageError, match="at least one run"):
        omnilab.compare([])
    with pytest.raises(UsageError, match="takes Run objects or run ids, not 42"):
        omnilab.compare([curves[0], 42])  # type: ignore[list-item]
    with pytest.raises(omnilab.RunNotFound, match="no run matches 'ffffffffff'"):
        omnilab.compare([curves[0], "ffffffffff"])
    assert len(omnilab.compare([curves[0], curves[0].id]).runs) == 1  # the same run once


# -- progress ----------------------------------------------------------------------------


def test_the_progress_panel_follows_a_run_through_its_phases() -> None:
    panel = NotebookReporter()
    panel.quiet = True  # rendering only; the kernel tests check what a notebook receives
    panel.note("runtime: local")
    panel.run_started("0123456789abcdef", "Demo <x>")
    panel.service_starting("redis", "valkey-server 9.1.2")
    assert panel.phase() == "starting"
    assert "◌ redis" in panel.render_text()
    panel.service_ready("redis", "redis://:****@127.0.0.1:6380/0", 0.25)
    panel.experiment_running("Demo", None)
    assert panel.phase() == "running" and "experiment running" in panel.render_text()
    panel.stack_removed("0123456789abcdef", 0.05)
    panel.run_finished("0123456789abcdef", "failed", 1.5, "Traceback...\nValueError: no")
    text = panel.render_text()
    assert panel.phase() == "failed" and "failed in 1.50 s" in text
    assert "error: ValueError: no" in text and "○ redis" in text
    html = panel.render_html()
    assert "Demo &lt;x&gt;" in html and "<x>" not in html
