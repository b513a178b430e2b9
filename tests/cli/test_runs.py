"""``omnilab runs``: names and tags, filters, param columns, compare, delete; tables that
fit 80 columns. Runs are real (``omnilab run``) where the test is about running; where
it is about showing many or odd runs, their records are written to the real tracking
store directly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from omnilab.procs import process_start_time
from omnilab.tracking.records import RunRecord
from omnilab.tracking.store import TrackingStore
from tests.support import EXPERIMENTS, HELLO, OMNILAB, ROOT, run_cli

SECOND = f"{EXPERIMENTS / 'several.py'}:Second"
NARROW = {"COLUMNS": "80"}


def _tag() -> str:
    """A tag of this test alone: the tracking store is shared by the whole session."""
    return f"t-{uuid.uuid4().hex[:8]}"


def _run(*args: str) -> dict:
    result = run_cli("run", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _record(**fields) -> RunRecord:
    """A finished run written straight into the tracking store."""
    now = datetime.now(UTC)
    values = {
        "id": uuid.uuid4().hex,
        "experiment": "Recorded",
        "status": "succeeded",
        "created_at": now,
        "started_at": now,
        "finished_at": now,
        **fields,
    }
    record = RunRecord(**values)
    with TrackingStore.open() as store:
        store.create_run(record)
    return record


def _fits(text: str, width: int = 80) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, "\n".join(too_wide)


# -- names and tags ----------------------------------------------------------------------


def test_name_and_tags_are_stored_and_shown_everywhere(workdir: Path) -> None:
    tag = _tag()
    result = run_cli(
        "run", HELLO, "-p", "n_items=5", "--name", "baseline", "--tag", tag, "-t", "small"
    )
    assert result.returncode == 0, result.stderr
    assert f"name baseline · tags {tag}, small" in result.stdout  # the run's summary
    run_id = result.stdout.split()[1]

    listing = run_cli("runs", "ls", "--tag", tag, env=NARROW)
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()
    assert header.split()[:2] == ["id", "name"] and "tags" in header.split()
    assert row.startswith(run_id[:8]) and "baseline" in row and f"{tag},small" in row

    shown = run_cli("runs", "show", run_id[:8])
    assert "baseline" in shown.stdout and f"{tag}, small" in shown.stdout
    record = json.loads(run_cli("runs", "show", run_id[:8], "--json").stdout)
    assert record["name"] == "baseline" and record["tags"] == [tag, "small"]

    # Tags filter, alone or with others; every tag given must be there.
    both = json.loads(run_cli("runs", "ls", "--tag", tag, "--tag", "small", "--json").stdout)
    assert [r["id"] for r in both] == [run_id]
    assert json.loads(run_cli("runs", "ls", "--tag", tag, "--tag", "big", "--json").stdout) == []


def test_python_api_takes_name_and_tags(workdir: Path) -> None:
    import omnilab
    from omnilab.progress import QuietReporter

    tag = _tag()
    run = omnilab.run(SECOND, name="from python", tags=[tag, tag], reporter=QuietReporter())
    assert run.ok and run.name == "from python" and run.tags == [tag]  # repeats dropped
    table = omnilab.runs(tag=tag)
    assert [r.id for r in table] == [run.id]
    # The notebook's card and table show them too (escaped, as everything a run holds).
    assert "from python" in run._repr_html_() and f"tags {tag}" in run._repr_html_()
    assert "from python" in table._repr_html_() and tag in table._repr_html_()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tag", "two words"], "tag 'two words': use 1 to 64 letters"),
        (["--tag", ""], "tag '': use 1 to 64"),
        (["--name", "a\nb"], "run name 'a\\nb': use 1 to 100 characters on one line"),
    ],
)
def test_bad_names_and_tags_are_refused_before_anything_starts(
    args: list[str], message: str, workdir: Path
) -> None:
    result = run_cli("run", SECOND, *args)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (workdir / "runs").exists()


# -- runs ls -------------------------------------------------------------------------------


def test_filters_without_a_match_say_so(workdir: Path) -> None:
    result = run_cli("runs", "ls", "--experiment", "NoSuchExperiment", "--status", "failed")
    assert result.returncode == 0, result.stderr
    assert "no runs match these filters (--experiment NoSuchExperiment --status failed)" in (
        result.stderr
    )
    assert "no runs recorded yet" not in result.stderr
    tagged = run_cli("runs", "ls", "--tag", _tag())
    assert "no runs match these filters (--tag t-" in tagged.stderr


def test_params_are_columns_the_differing_ones_first(workdir: Path) -> None:
    tag = _tag()
    first = _run(SECOND, "-p", "label=small", "-p", "ratio=0.25", "--tag", tag)
    second = _run(SECOND, "-p", "label=large", "-p", "ratio=0.25", "--tag", tag)
    result = run_cli("runs", "ls", "--tag", tag, env={"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split()
    # label differs between the two runs: it comes before the params they share.
    assert header.index("label") < header.index("ratio") < header.index("sizes")
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "large" in rows[second["id"][:8]] and "small" in rows[first["id"][:8]]
    assert "0.25" in rows[first["id"][:8]] and "[1, 2]" in rows[first["id"][:8]]


def test_tables_fit_80_columns(workdir: Path) -> None:
    """Many long params, a long experiment name, a long summary: every line of `runs ls`,
    `runs show` and `runs compare` fits 80 columns, one line per run, and what identifies
    a run (id, name, status, tags) is never cut."""
    tag = _tag()
    params = {f"parameter_number_{i}": "a-rather-long-value-" * 3 for i in range(12)}
    summary = {
        "model": "qwen2.5-coder:1.5b",
        "pass_rate": 0.8333333333,
        "status": {f"task_{i}": "passed" for i in range(8)},
        "generated_dir": "/a/very/long/path/" * 8,
    }
    runs = [
        _record(
            experiment="AnExperimentWithAVeryLongNameIndeed",
            name=f"sweep {i}",
            tags=[tag, "long-tag-number-two"],
            params={**params, "seed": i},
            summary=summary,
        )
        for i in range(3)
    ]
    listing = run_cli("runs", "ls", "--tag", tag, env=NARROW)
    assert listing.returncode == 0, listing.stderr
    _fits(listing.stdout)
    lines = listing.stdout.splitlines()
    assert len(lines) == 4  # a header and one line per run
    for run, line in zip(reversed(runs), lines[1:], strict=True):
        assert line.startswith(run.short_id) and run.name in line and "succeeded" in line
    # The param that sets the runs apart is shown even here; the others are said so.
    assert lines[0].split()[-1] == "seed", lines[0]
    for run, line in zip(reversed(runs), lines[1:], strict=True):
        assert line.split()[-1] == str(run.params["seed"]), line
    assert "12 more params not shown (parameter_number_0" in listing.stderr
    wide = run_cli("runs", "ls", "--tag", tag, env={"COLUMNS": "160"})
    header = wide.stdout.splitlines()[0].split()
    assert header[header.index("tags") + 1] == "seed"  # the param that differs comes first
    _fits(wide.stdout, 160)

    shown = run_cli("runs", "show", runs[0].id, env=NARROW)
    assert shown.returncode == 0, shown.stderr
    _fits(shown.stdout)
    assert "status.task_7" in shown.stdout  # a dict summary value: one line per key

    compared = run_cli("runs", "compare", runs[0].id, runs[1].id, runs[2].id, env=NARROW)
    assert compared.returncode == 0, compared.stderr
    _fits(compared.stdout)


def test_images_ls_fits_80_columns(workdir: Path) -> None:
    result = run_cli("images", "ls", env=NARROW)
    assert result.returncode == 0, result.stderr
    _fits(result.stdout)
    from omnilab.runtimes.docker.images import catalog

    for spec in catalog().values():
        assert spec.tag in result.stdout  # whole, never cut
    rows = [line for line in result.stdout.splitlines() if line.startswith("omnilab/")]
    assert len(rows) == len(catalog())  # one line per image


def test_images_say_what_they_are_without_the_seed(workdir: Path) -> None:
    """The images are described in words a new user knows: OmniMind's containers, not
    "the seed's" (the project omnilab grew from), here and in the recipes' headers."""
    result = run_cli("images", "ls", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    flat = " ".join(result.stdout.split())
    assert "OmniMind's experiments container" in flat
    assert "OmniMind's code-gen container" in flat
    assert "seed" not in result.stdout
    for recipe in ("Dockerfile.experiments", "Dockerfile.codegen"):
        header = (ROOT / "dockerfiles" / recipe).read_text().splitlines()[0]
        assert "seed" not in header, header


# -- runs compare ----------------------------------------------------------------------------


def test_compare_shows_runs_side_by_side_and_marks_differences(workdir: Path) -> None:
    a = _run(SECOND, "-p", "label=left", "--name", "A")
    b = _run(SECOND, "-p", "label=right")
    result = run_cli("runs", "compare", a["id"][:8], b["id"][:8], env=NARROW)
    assert result.returncode == 0, result.stderr
    _fits(result.stdout)
    lines = result.stdout.splitlines()
    assert lines[0].split() == [a["id"][:8], b["id"][:8]]
    label = next(line for line in lines if line.split()[:2] == ["*", "label"])
    assert label.split()[2:] == ["left", "right"]
    ratio = next(line for line in lines if line.split()[0] == "ratio")
    assert not ratio.startswith("*") and ratio.split() == ["ratio", "0.5", "0.5"]
    assert "* differs between the runs" in result.stdout

    data = json.loads(run_cli("runs", "compare", a["id"], b["id"], "--json").stdout)
    rows = {(r["group"], r["name"]): r for r in data["rows"]}
    assert rows[("params", "label")]["differs"] is True
    assert rows[("params", "ratio")]["differs"] is False
    assert rows[("run", "name")]["values"] == ["A", None]


def test_compare_needs_two_runs(workdir: Path) -> None:
    a = _run(SECOND)
    for args in ([a["id"]], [a["id"], a["id"][:8]]):
        result = run_cli("runs", "compare", *args)
        assert result.returncode == 2
        assert result.stderr.startswith("error:") and len(result.stderr.splitlines()) == 1


# -- runs delete ------------------------------------------------------------------------------


def _count(table: str, run_id: str, column: str = "run_id") -> int:
    with psycopg.connect(os.environ["OMNILAB_TRACKING_URL"]) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM omnilab.{table} WHERE {column} = %s", (run_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_delete_asks_then_removes_records_metrics_and_folder(workdir: Path) -> None:
    run = _run(HELLO, "-p", "n_items=5")
    folder = Path(run["run_dir"])
    assert folder.is_dir() and _count("metrics", run["id"]) > 0
    assert _count("artifacts", run["id"]) > 0

    for answer in ("n\n", ""):  # no, and no answer at all (stdin closed)
        declined = subprocess.run(
            [str(OMNILAB), "runs", "delete", run["id"][:8]],
            input=answer,
            capture_output=True,
            text=True,
            check=False,
        )
        assert declined.returncode == 1, declined.stderr
        assert "delete this run? [y/N]" in declined.stderr
        assert "nothing deleted" in declined.stderr
        assert _count("runs", run["id"], "id") == 1

    deleted = run_cli("runs", "delete", run["id"][:8], "--yes")
    assert deleted.returncode == 0, deleted.stderr
    said = deleted.stdout.splitlines()[-1]
    assert said.startswith(f"run {run['id'][:8]} deleted: record, ")
    assert f"{_metric_points(run):,} metric points" in said
    assert "1 artifact record," in said and f"folder {folder}" in said
    assert _count("runs", run["id"], "id") == 0
    assert _count("metrics", run["id"]) == 0 and _count("artifacts", run["id"]) == 0
    assert not folder.exists()
    assert run_cli("runs", "show", run["id"]).returncode == 2


def _metric_points(run: dict) -> int:
    return sum(m["count"] for m in run["metrics"].values())


def test_delete_refuses_a_running_run_kept_data_or_a_promoted_run(workdir: Path) -> None:
    pid = os.getpid()  # alive: the run is not an orphan for reconcile_orphans
    environment = {
        "hostname": socket.gethostname(),
        "pid": pid,
        "pid_start": process_start_time(pid),
    }
    running = _record(status="running", environment=environment, finished_at=None)
    kept_dir = workdir / "kept-data"
    (kept_dir / "redis").mkdir(parents=True)
    kept = _record(
        stack={"data": {"path": str(kept_dir), "state": "kept", "host": socket.gethostname()}}
    )
    promoted = _record()
    with psycopg.connect(os.environ["OMNILAB_TRACKING_URL"]) as conn:
        conn.execute(
            "INSERT INTO omnilab.promotions (id, run_id, status, on_conflict, actor) "
            "VALUES (%s, %s, 'succeeded', 'fail', 'test')",
            (uuid.uuid4().hex, promoted.id),
        )
    for record, why in (
        (running, "it is running"),
        (kept, f"its stack data waits for promotion at {kept_dir}"),
        (promoted, "it was promoted"),
    ):
        refused = run_cli("runs", "delete", record.id, "--yes")
        assert refused.returncode == 2, refused.stderr
        assert why in refused.stderr and "use --force" in refused.stderr
        assert _count("runs", record.id, "id") == 1

    forced = run_cli("runs", "delete", running.id, kept.id, promoted.id, "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"stack data {kept_dir}" in forced.stdout and not kept_dir.exists()
    assert "1 promotion record\n" in forced.stdout
    for record in (running, kept, promoted):
        assert _count("runs", record.id, "id") == 0
    assert _count("promotions", promoted.id) == 0


def test_codegen_templates_fit_80_columns(workdir: Path) -> None:
    """Your templates' folder is said once; each template is one short line."""
    folder = workdir / ("a-long-folder-name-" * 5) / "prompts"
    folder.mkdir(parents=True)
    (folder / "solve.j2").write_text("Solve {{ task.name }}\n")
    (folder / "mine.j2").write_text("Mine\n")
    result = run_cli("codegen", "templates", "--dir", folder, env=NARROW)
    assert result.returncode == 0, result.stderr
    _fits(result.stdout)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("yours: ")
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in lines if "  " in line}
    assert rows["mine"] == "yours"
    assert rows["solve"] == "yours (in place of the shipped one)"
    assert rows["fix"] == "shipped"
