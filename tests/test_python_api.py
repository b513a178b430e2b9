"""The Python API: omnilab.run, Run, omnilab.stack, the run context."""

from __future__ import annotations

from pathlib import Path

import pytest

import omnilab
from omnilab import Experiment, OmnilabError, ParamsError, Redis, Run, RunFailed
from omnilab.loader import load
from omnilab.progress import QuietReporter
from tests.support import EXPERIMENTS, HELLO

Hello = load(str(HELLO)).cls


def test_run_returns_a_run_with_everything() -> None:
    run = omnilab.run(Hello, params={"n_items": 7}, reporter=QuietReporter())
    assert isinstance(run, Run)
    assert run.ok and run.status == "succeeded"
    assert run.params == {"n_items": 7, "dim": 8, "seed": 0}
    assert run.summary["postgres_rows"] == 7
    assert run.latest_metrics["top_score"] == pytest.approx(
        [p.value for p in run.metric_history("top_score")][-1]
    )
    assert [p.step for p in run.metric_history("top_score")] == [0, 1, 2]
    assert run.artifacts_dir is not None and (run.artifacts_dir / "neighbours.txt").exists()
    assert run.raise_for_status() is run
    again = Run.load(run.id[:10])
    assert again.summary == run.summary


def test_failed_run_is_returned_not_raised() -> None:
    boom = load(str(EXPERIMENTS / "boom.py")).cls
    run = omnilab.run(boom, reporter=QuietReporter())
    assert run.status == "failed"
    assert "ZeroDivisionError" in (run.error or "")
    with pytest.raises(RunFailed, match="ZeroDivisionError: division by zero"):
        run.raise_for_status()


def test_bad_params_raise_before_anything_starts(workdir: Path) -> None:
    with pytest.raises(ParamsError, match="n_items"):
        omnilab.run(Hello, params={"n_items": "lots"}, reporter=QuietReporter())
    assert not (workdir / "runs").exists()


def test_file_reference_works_like_the_cli() -> None:
    run = omnilab.run(f"{EXPERIMENTS / 'several.py'}:First", reporter=QuietReporter())
    assert run.summary == {"which": "first"}


def test_undeclared_service_is_a_clear_error() -> None:
    class OnlyRedis(Experiment):
        services = [Redis()]
        gpu = False

        def run(self, ctx):  # type: ignore[no-untyped-def]
            return {"x": ctx.postgres}

    run = omnilab.run(OnlyRedis, reporter=QuietReporter())
    assert run.status == "failed"
    assert "this stack has no postgres service (it has redis)" in (run.error or "")


def test_summaries_are_made_json_safe() -> None:
    class Odd(Experiment):
        gpu = False

        def run(self, ctx):  # type: ignore[no-untyped-def]
            return {"nan": float("nan"), "path": Path("/x"), "tuple": (1, 2), 3: "int key"}

    run = omnilab.run(Odd, reporter=QuietReporter())
    assert run.summary == {"nan": None, "path": "/x", "tuple": [1, 2], "3": "int key"}


def test_stack_gives_connected_clients() -> None:
    with omnilab.stack(Redis(), omnilab.Postgres(), reporter=QuietReporter()) as s:
        s.redis.set("a", "1")
        assert s.redis.get("a") == "1"
        s.postgres.execute("create table t (x int)")
        s.postgres.execute("insert into t values (1)")
        assert s.postgres.execute("select count(*) from t").fetchone() == (1,)
        assert set(s.urls) == {"redis", "postgres"}
        with pytest.raises(OmnilabError, match="no qdrant service"):
            _ = s.qdrant


def test_duplicate_or_foreign_services_are_refused() -> None:
    with pytest.raises(omnilab.UsageError, match="declared twice"):
        omnilab.Stack(Redis(), Redis())
    with pytest.raises(omnilab.UsageError, match="is not a service"):
        omnilab.Stack("redis")  # type: ignore[arg-type]


def test_sys_exit_inside_an_experiment_is_recorded() -> None:
    import sys

    class Quits(Experiment):
        gpu = False

        def run(self, ctx):  # type: ignore[no-untyped-def]
            sys.exit(3)

    class Stops(Experiment):
        gpu = False

        def run(self, ctx):  # type: ignore[no-untyped-def]
            sys.exit(0)

    failed = omnilab.run(Quits, reporter=QuietReporter())
    assert failed.status == "failed" and failed.error == "the experiment called sys.exit(3)"
    assert omnilab.run(Stops, reporter=QuietReporter()).status == "succeeded"
