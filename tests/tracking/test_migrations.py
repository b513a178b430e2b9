"""The tracking store's migrations: fresh databases, databases of the runner before yoyo,
concurrent first starts, failures, and the cost of a start with nothing to apply."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from omnilab.tracking import schema
from tests.support.queue_helpers import new_database

ALL = [m.version for m in schema.available()]


@pytest.fixture
def fresh_db(tracking_url: str) -> str:
    return new_database(tracking_url)


def _recorded(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT migration_id FROM omnilab._yoyo_migration ORDER BY 1")
    return [r[0] for r in rows]


def _tables(conn: psycopg.Connection, namespace: str) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
        (namespace,),
    )
    return {r[0] for r in rows}


def _as_the_runner_before_yoyo(conn: psycopg.Connection, versions: list[int]) -> None:
    """What omnilab's own runner left: the SQL applied, versions in schema_migrations."""
    conn.execute("CREATE SCHEMA omnilab")
    conn.execute(
        "CREATE TABLE omnilab.schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for migration in schema.available():
        if migration.version in versions:
            with conn.transaction():
                conn.execute(migration.path.read_text())
                conn.execute(
                    "INSERT INTO omnilab.schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )


def test_a_fresh_database_migrates_into_the_omnilab_schema_only(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert schema.migrate(conn) == ALL
        assert schema.migrate(conn) == []
        assert _recorded(conn) == [m.id for m in schema.available()]
        assert {"runs", "_yoyo_migration"} <= _tables(conn, "omnilab")
        assert _tables(conn, "public") == set()  # yoyo's tables too stay in omnilab
        # The store's connection gets its search_path back.
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)


@pytest.mark.parametrize("before", [ALL, ALL[:2]], ids=["all", "first-two"])
def test_a_database_of_the_runner_before_yoyo_upgrades(fresh_db: str, before: list[int]) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        _as_the_runner_before_yoyo(conn, before)
        conn.execute(
            "INSERT INTO omnilab.runs (id, experiment, status) VALUES ('r', 'E', 'running')"
        )
        # What the old runner applied is not run again (its CREATE TABLEs would fail).
        assert schema.migrate(conn) == [v for v in ALL if v not in before]
        assert schema.migrate(conn) == []
        assert _recorded(conn) == [m.id for m in schema.available()]
        assert conn.execute("SELECT id FROM omnilab.runs").fetchall() == [("r",)]
        # Left as it was, so an older omnilab still finds its versions.
        versions = conn.execute("SELECT version FROM omnilab.schema_migrations ORDER BY 1")
        assert [r[0] for r in versions] == before


def test_concurrent_first_starts_apply_each_migration_once(fresh_db: str) -> None:
    starters = 4
    barrier = threading.Barrier(starters)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(fresh_db, autocommit=True) as conn:
                barrier.wait()
                applied.append(schema.migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(v for versions in applied for v in versions) == ALL
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert _recorded(conn) == [m.id for m in schema.available()]


def test_a_later_number_may_be_applied_before_an_earlier_one(fresh_db: str, tmp_path: Path) -> None:
    """Branches merge in any order: 0003 applied first, then 0002 arriving, both apply."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for migration in schema.available():
        if migration.version in (1, 3):  # later ones may build on 0002's tables
            shutil.copy(migration.path, folder)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert 3 in schema.migrate(conn, folder)
    (folder / "0002_from_another_branch.sql").write_text("CREATE TABLE omnilab.later (x int);\n")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert schema.migrate(conn, folder) == [2]
        assert conn.execute("SELECT count(*) FROM omnilab.later").fetchone() == (0,)


def test_a_failing_migration_leaves_neither_its_changes_nor_its_record(
    fresh_db: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(schema.available()[0].path, folder)
    (folder / "0002_broken.sql").write_text("CREATE TABLE omnilab.half (x int);\nSELECT 1 / 0;\n")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            schema.migrate(conn, folder)
        assert _recorded(conn) == ["0001_initial"]
        assert "half" not in _tables(conn, "omnilab")
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        # The advisory lock was given back: another connection takes it at once.
        with psycopg.connect(fresh_db, autocommit=True) as other:
            taken = other.execute("SELECT pg_try_advisory_lock(%s)", (schema._LOCK_KEY,))
            assert taken.fetchone() == (True,)


def test_a_start_with_nothing_to_apply_does_not_import_yoyo(fresh_db: str) -> None:
    """Importing yoyo costs about 20 ms: only a start that migrates may pay it."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        schema.migrate(conn)
    code = (
        "import sys, psycopg; from omnilab.tracking import schema; "
        "conn = psycopg.connect(sys.argv[1], autocommit=True); "
        "print(schema.migrate(conn), 'yoyo' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, fresh_db], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["[]", "False"]
