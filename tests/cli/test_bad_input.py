"""Bad input: one clear line, exit status 2, nothing started, nothing recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnilab.tracking.store import TrackingStore
from tests.support import EXPERIMENTS, HELLO, run_cli

TIMED = f"{EXPERIMENTS / 'float_params.py'}:Timed"

CASES = [
    (["run", "missing.py"], "missing.py: no such file"),
    (["run", EXPERIMENTS / "syntax_error.py"], "syntax error (line 3)"),
    (["run", EXPERIMENTS / "bad_import.py"], "cannot import (line 1): ModuleNotFoundError"),
    (["run", EXPERIMENTS / "no_experiment.py"], "no Experiment subclass"),
    (["run", EXPERIMENTS / "several.py"], "holds several experiments (First, Second)"),
    (["run", f"{EXPERIMENTS / 'several.py'}:Nope"], "no experiment named 'Nope'"),
    (["run", HELLO, "-p", "n_itemz=3"], "-p n_itemz: unknown parameter"),
    (["run", HELLO, "-p", "n_items=many"], "-p n_items: Input should be a valid integer"),
    (["run", HELLO, "-p", "n_items"], "expected key=value"),
    (["run", TIMED, "-p", "seconds=nan"], "-p seconds: Input should be a finite number"),
    (["run", TIMED, "-p", "seconds=-inf"], "-p seconds: Input should be a finite number"),
    (["run", TIMED, "-p", "seconds=1e400"], "-p seconds: Input should be a finite number"),
    (["run", TIMED, "-p", 'weights={"a": NaN}'], "-p weights.a: Input should be a finite"),
    (["run", TIMED, "-p", "extra=[1, 1e400]"], "-p extra: NaN and infinite numbers are not"),
    (["run", EXPERIMENTS / "no_run.py"], "Forgetful does not define run(self, ctx)"),
    (["run", EXPERIMENTS / "chat.py", "--runtime", "local"], "needs Ollama"),
    (["run", HELLO, "--gpu", "--runtime", "local"], "gpu=True, but this host has no usable GPU"),
    (["run", EXPERIMENTS / "bad_resources.py"], "resources: memory='lots' is not a size"),
    (
        ["run", f"{EXPERIMENTS / 'bounded.py'}:Misnamed"],
        "resources of Misnamed: per_service names 'postgress', which is not one of its "
        "containers (redis, experiment)",
    ),
    (["runs", "show", "ffffffff"], "no run matches 'ffffffff'"),
    (["runs", "ls", "--status", "great"], "--status 'great'"),
    (["stack", "up", "mongodb"], "unknown service 'mongodb'"),
    (["stack", "down", "nosuchstack"], "no stack matches"),
]


@pytest.mark.parametrize(
    ("args", "message"), CASES, ids=[" ".join(map(str, a))[-48:] for a, _ in CASES]
)
def test_bad_input_exits_2_with_one_line(args: list, message: str, workdir: Path) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert "Traceback" not in result.stderr
    # Nothing half-started: no stack state, no run directory, no run recorded.
    assert not list((workdir / "state").glob("stacks/*.json"))
    assert not (workdir / "runs").exists()


def test_refused_runs_are_not_recorded(workdir: Path) -> None:
    with TrackingStore.open() as store:
        before = len(store.list_runs(limit=1000))
    assert run_cli("run", HELLO, "-p", "dim=-x").returncode == 2
    with TrackingStore.open() as store:
        assert len(store.list_runs(limit=1000)) == before


def test_parser_errors_exit_2() -> None:
    result = run_cli("run", HELLO, "--runtime", "mars")
    assert result.returncode == 2
    assert "mars" in result.stderr
    assert run_cli("run").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_a_model_that_allows_infinities_runs_and_records_them(workdir: Path) -> None:
    result = run_cli(
        "run", f"{EXPERIMENTS / 'float_params.py'}:Unbounded", "-p", "limit=inf", "--json"
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    # JSON has no infinity: recorded as the string the model reads back as one.
    assert run["params"] == {"limit": "Infinity"}
    assert run["summary"] == {"limit_is_finite": False}
    with TrackingStore.open() as store:
        assert store.get_run(run["id"]).params == {"limit": "Infinity"}
