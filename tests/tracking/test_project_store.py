"""One tracking store per project, chosen on purpose, and a line saying where runs are
that the store in use does not hold.

Real processes: the ``omnilab`` command, the embedded PostgreSQL, the session's server.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.support import run_cli, wait_until
from tests.support.queue_helpers import new_database

TINY = '''
from omnilab import Experiment


class Tiny(Experiment):
    """No services: what is tested here is where the run is recorded."""

    def run(self, ctx):
        ctx.log_metric("x", 1)
        return {"ok": True}
'''


def _record(cwd: Path, env: dict[str, str] | None = None) -> str:
    experiment = cwd / "tiny.py"
    experiment.write_text(TINY)
    result = run_cli("run", experiment, "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def _listed(cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    result = run_cli("runs", "ls", "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return [r["id"] for r in json.loads(result.stdout)]


def _after(stderr: str, first: str) -> str:
    """The line after the one starting with ``first`` (omnilab's own lines, such as the
    unprivileged user's, may come before them)."""
    lines = stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(first))
    return lines[at + 1]


def _stopped(home: Path) -> bool:
    return not (home / "pgdata" / "postmaster.pid").exists()


def test_a_subfolder_and_the_root_share_one_store_that_postgres_url_does_not_move(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, tracking_url: str
) -> None:
    monkeypatch.delenv("OMNILAB_TRACKING_URL")
    (workdir / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    notebooks = workdir / "work" / "nb"
    notebooks.mkdir(parents=True)
    # Production's database (or a stack's, after `eval "$(omnilab stack env ID)"`).
    production = new_database(tracking_url)
    monkeypatch.setenv("POSTGRES_URL", production)

    run_id = _record(notebooks)
    assert (workdir / ".omnilab" / "pgdata" / "PG_VERSION").is_file()
    assert not (notebooks / ".omnilab").exists()
    assert wait_until(lambda: _stopped(workdir / ".omnilab"), timeout=10)
    assert _listed(workdir) == [run_id]
    assert _listed(notebooks) == [run_id]
    shown = run_cli("runs", "show", run_id[:8], "--json", cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    # Nothing of omnilab's went into POSTGRES_URL's database.
    with psycopg.connect(production) as conn:
        row = conn.execute("SELECT to_regnamespace('omnilab')").fetchone()
    assert row == (None,)
    assert wait_until(lambda: _stopped(workdir / ".omnilab"), timeout=10)


def test_runs_in_postgres_url_are_pointed_at(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, tracking_url: str
) -> None:
    # Runs recorded where an older omnilab put them: in POSTGRES_URL's database.
    old_store = new_database(tracking_url)
    run_id = _record(workdir, env={"OMNILAB_TRACKING_URL": old_store})
    monkeypatch.delenv("OMNILAB_TRACKING_URL")
    monkeypatch.setenv("POSTGRES_URL", old_store)
    monkeypatch.setenv("OMNILAB_HOME", str(workdir / "fresh"))
    from omnilab.redact import redact_url, secrets_of

    listing = run_cli("runs", "ls")
    assert listing.returncode == 0, listing.stderr
    expected = (
        f"note: 1 run is recorded in the tracking store at {redact_url(old_store)} "
        "(POSTGRES_URL), which omnilab no longer uses for tracking"
    )
    note = _after(listing.stderr, "no runs recorded yet")
    assert note.startswith(expected), listing.stderr
    assert "set OMNILAB_TRACKING_URL to that URL" in note
    for secret in secrets_of(old_store):
        assert secret not in listing.stderr

    for command in (["runs", "show", run_id[:8]], ["promote", run_id[:8], "--dry-run"]):
        result = run_cli(*command)
        assert result.returncode == 2, result.stderr
        assert _after(result.stderr, "error: no run matches").startswith(expected)
    assert wait_until(lambda: _stopped(workdir / "fresh"), timeout=10)


def test_an_embedded_store_left_in_the_working_directory_is_pointed_at(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNILAB_TRACKING_URL")
    notebooks = workdir / "nb"
    notebooks.mkdir()
    # Recorded before the project had a root: the store went to the notebook's folder.
    run_id = _record(notebooks)
    assert wait_until(lambda: _stopped(notebooks / ".omnilab"), timeout=10)
    (workdir / "pyproject.toml").write_text('[project]\nname = "demo"\n')

    listing = run_cli("runs", "ls", cwd=notebooks)
    assert listing.returncode == 0, listing.stderr
    assert _after(listing.stderr, "no runs recorded yet") == (
        "note: Earlier runs may be recorded in the embedded store at .omnilab, which this "
        f"project no longer uses (its store is {workdir.resolve() / '.omnilab'}): "
        "OMNILAB_HOME=.omnilab omnilab runs ls lists them"
    )
    # The line's advice works.
    assert _listed(notebooks, env={"OMNILAB_HOME": ".omnilab"}) == [run_id]
    for home in (workdir / ".omnilab", notebooks / ".omnilab"):
        assert wait_until(lambda home=home: _stopped(home), timeout=10)


def test_a_listing_with_runs_still_points_at_an_older_store_below_the_root(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNILAB_TRACKING_URL")
    work = workdir / "work"
    notebooks = work / "nb"
    notebooks.mkdir(parents=True)
    # A notebook's older runs, recorded before the project had a root (in work/), and a
    # script's at the root since.
    old_id = _record(work)
    assert wait_until(lambda: _stopped(work / ".omnilab"), timeout=10)
    (workdir / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    new_id = _record(workdir)
    assert wait_until(lambda: _stopped(workdir / ".omnilab"), timeout=10)

    store = workdir.resolve() / ".omnilab"
    for cwd, shown in ((notebooks, "../.omnilab"), (work, ".omnilab")):
        listing = run_cli("runs", "ls", cwd=cwd)
        assert listing.returncode == 0, listing.stderr
        assert new_id[:8] in listing.stdout and old_id[:8] not in listing.stdout
        notes = [line for line in listing.stderr.splitlines() if line.startswith("note:")]
        assert notes == [
            f"note: Earlier runs may be recorded in the embedded store at {shown}, which this "
            f"project no longer uses (its store is {store}): OMNILAB_HOME={shown} omnilab "
            "runs ls lists them"
        ], listing.stderr
        # Scripts reading --json get the runs alone.
        assert _listed(cwd) == [new_id]
    assert _listed(notebooks, env={"OMNILAB_HOME": "../.omnilab"}) == [old_id]
    for home in (store, work / ".omnilab"):
        assert wait_until(lambda home=home: _stopped(home), timeout=10)


def test_no_note_when_there_is_nothing_elsewhere(workdir: Path) -> None:
    listing = run_cli("runs", "ls")
    assert listing.returncode == 0
    assert "note:" not in listing.stderr
