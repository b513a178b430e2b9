"""Versioned migrations of the tracking store's ``omnilab`` schema.

The migrations are the numbered ``.sql`` files beside this module. yoyo-migrations
parses them, applies those not applied yet in order (a file merged from another branch
may carry a lower number than one already applied: it still applies), and records them
in ``omnilab._yoyo_migration``.

Around it omnilab keeps what yoyo does not do the way a tracking store needs:

- every store opening asks whether anything is left to apply with two quick reads and no
  import of yoyo, which would cost about 20 ms at every command;
- a PostgreSQL advisory lock, rather than yoyo's lock row that a SIGKILLed holder leaves
  behind, makes several workers starting at once apply each migration once;
- a migration's statements and its record commit in one transaction, so a crash between
  them cannot leave a migration applied but unrecorded;
- versions recorded by the runner omnilab had before yoyo (``omnilab.schema_migrations``)
  count as applied; that table is left as it was, for an older omnilab;
- a schema newer than this omnilab knows is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from omnilab.errors import TrackingStoreError

SCHEMA = "omnilab"
MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x6F6D6E69  # "omni": the advisory lock id shared by every omnilab process
_TABLE = "_yoyo_migration"  # yoyo's record of applied migrations, in SCHEMA
_BEFORE_YOYO = "schema_migrations"  # where omnilab's own runner recorded versions
_FILE = re.compile(r"(\d{4})_(\w+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def id(self) -> str:
        """yoyo's name for it: the file name without ``.sql``."""
        return f"{self.version:04d}_{self.name}"


def available(folder: Path = MIGRATIONS) -> list[Migration]:
    found = []
    for path in folder.iterdir():
        match = _FILE.fullmatch(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return sorted(found, key=lambda m: m.version)


def _version(migration_id: str) -> int:
    match = re.match(r"(\d+)_", migration_id)
    return int(match.group(1)) if match else 0


def _applied_ids(conn: psycopg.Connection) -> set[str] | None:
    """The migrations yoyo recorded, or None before its table exists."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{_TABLE}",)).fetchone()
    if not exists or exists[0] is None:
        return None
    return {row[0] for row in conn.execute(f"SELECT migration_id FROM {SCHEMA}.{_TABLE}")}


def migrate(conn: psycopg.Connection, folder: Path = MIGRATIONS) -> list[int]:
    """Bring the schema up to date; returns the versions applied now.

    ``conn`` must be in autocommit mode: yoyo opens and commits its transactions itself.
    """
    migrations = available(folder)
    if _applied_ids(conn) == {m.id for m in migrations}:
        return []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        return _migrate_locked(conn, migrations)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _migrate_locked(conn: psycopg.Connection, migrations: list[Migration]) -> list[int]:
    from yoyo.migrations import Migration as YoyoMigration
    from yoyo.migrations import MigrationList

    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    backend = _backend_class()(conn)  # sets search_path: yoyo's tables go in SCHEMA
    try:
        backend.ensure_internal_schema_updated()
        _adopt_records_before_yoyo(conn, backend)
        applied_ids = _applied_ids(conn) or set()
        newest_known = migrations[-1].version if migrations else 0
        newest_applied = max((_version(i) for i in applied_ids), default=0)
        if newest_applied > newest_known:
            raise TrackingStoreError(
                f"the tracking store's schema is at version {newest_applied}, newer than "
                f"this omnilab knows ({newest_known}); upgrade omnilab"
            )
        known = MigrationList(
            YoyoMigration(m.id, str(m.path), str(m.path.parent)) for m in migrations
        )
        applied_now: list[int] = []
        for migration in backend.to_apply(known):
            # One transaction for the statements and their record (yoyo's apply_one
            # commits them apart); the nested transactions below become savepoints.
            with backend.transaction():
                migration.process_steps(backend, "apply")
                backend.mark_one(migration, log=False)
            applied_now.append(_version(migration.id))
        return applied_now
    finally:
        conn.execute("RESET search_path")


def _adopt_records_before_yoyo(conn: psycopg.Connection, backend: Any) -> None:
    """Mark as applied in yoyo's table what omnilab's earlier runner recorded.

    Asked on every migration, not only the first: idempotent, so a crash between
    yoyo's table being made and this marking cannot leave old versions to run again.
    """
    exists = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{_BEFORE_YOYO}",)).fetchone()
    if not exists or exists[0] is None:
        return
    from yoyo.migrations import Migration as YoyoMigration

    rows = conn.execute(f"SELECT version, name FROM {SCHEMA}.{_BEFORE_YOYO}").fetchall()
    done = set(backend.get_applied_migration_hashes())
    earlier = [YoyoMigration(f"{v:04d}_{name}", "", None) for v, name in rows]
    missing = [m for m in earlier if m.hash not in done]
    if missing:
        with backend.transaction():
            for migration in missing:
                backend.mark_one(migration, log=False)


@cache
def _backend_class() -> type:
    """yoyo's psycopg 3 backend on a connection omnilab already has.

    yoyo connects by URL; the store's connection may be a libpq keyword string, a Unix
    socket, or carry a password: reusing it spares a second connection and its setup.
    The advisory lock is already held, so yoyo's own lock is not taken.
    """
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
    from yoyo.connections import parse_uri

    class Backend(PostgresqlPsycopgBackend):  # type: ignore[misc]  # yoyo is untyped
        def __init__(self, conn: psycopg.Connection) -> None:
            self._given = conn
            super().__init__(parse_uri("postgresql+psycopg://"), _TABLE)

        def connect(self, dburi: Any) -> psycopg.Connection:
            self.schema = SCHEMA
            return self._given

        @contextmanager
        def lock(self, timeout: int = 10) -> Iterator[None]:
            yield

    return Backend


def current_version(conn: psycopg.Connection) -> int:
    return max((_version(i) for i in _applied_ids(conn) or ()), default=0)
