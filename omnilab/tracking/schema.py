"""Versioned migrations of the tracking store's ``omnilab`` schema.

Migrations are the numbered ``.sql`` files beside this module, applied in order, each in
its own transaction, and recorded in ``omnilab.schema_migrations``. An advisory lock
makes concurrent first uses (several workers starting at once) apply each one once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from omnilab.errors import TrackingStoreError

_LOCK_KEY = 0x6F6D6E69  # "omni": the advisory lock id shared by every omnilab process


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("omnilab.tracking.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def _up_to_date(conn: psycopg.Connection, migrations: list[Migration]) -> bool:
    """Whether every known migration is applied (and none newer): then there is nothing
    to lock for. Every store opening asks, so it must cost two quick reads, not a lock."""
    exists = conn.execute("SELECT to_regclass('omnilab.schema_migrations')").fetchone()
    if not exists or exists[0] is None:
        return False
    done = {row[0] for row in conn.execute("SELECT version FROM omnilab.schema_migrations")}
    return done == {m.version for m in migrations}


def migrate(conn: psycopg.Connection) -> list[int]:
    """Bring the schema up to date; returns the versions applied now."""
    migrations = available()
    if _up_to_date(conn, migrations):
        return []
    newest_known = migrations[-1].version if migrations else 0
    applied_now: list[int] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        with conn.transaction():
            conn.execute("CREATE SCHEMA IF NOT EXISTS omnilab")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS omnilab.schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        done = {row[0] for row in conn.execute("SELECT version FROM omnilab.schema_migrations")}
        if done and max(done) > newest_known:
            raise TrackingStoreError(
                f"the tracking store's schema is at version {max(done)}, newer than this "
                f"omnilab knows ({newest_known}); upgrade omnilab"
            )
        for migration in migrations:
            if migration.version in done:
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO omnilab.schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            applied_now.append(migration.version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def current_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM omnilab.schema_migrations").fetchone()
    return int(row[0]) if row else 0
