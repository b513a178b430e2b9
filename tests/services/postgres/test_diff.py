"""The table diff's join, on a real server: both of its paths (integer keys close
together, joined by position; any other key, joined by one sort) give the same exact
counts, and the first examples in key order whatever order the rows were written in (for a key
joined by its hash, the hash's order)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from omnilab.services.postgres import diff as postgres_diff

#: (name, key column's type, key of row g): dense integers, integers far apart (the
#: sorted path), text (a hash of the key: the sorted path too).
KEYS = [
    ("dense", "bigint", "g"),
    ("sparse", "bigint", "g * 1000000000000 - 4000000000000000000"),
    ("text", "text", "'k' || lpad(g::text, 5, '0')"),
]


@pytest.fixture
def two_databases(tracking_url: str) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    names = [f"d_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(tracking_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f"CREATE DATABASE {name}")
    base = tracking_url.rsplit("/", 1)[0]
    conns = [psycopg.connect(f"{base}/{name}", autocommit=True) for name in names]
    yield conns[0], conns[1]
    for conn in conns:
        conn.close()
    with psycopg.connect(tracking_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.parametrize(("kind", "key_type", "key"), KEYS, ids=[k[0] for k in KEYS])
def test_both_joins_count_exactly_and_name_the_first_keys(
    two_databases: tuple[psycopg.Connection, psycopg.Connection],
    kind: str,
    key_type: str,
    key: str,
) -> None:
    run, production = two_databases
    for conn in (run, production):
        conn.execute(f"CREATE TABLE t (k {key_type} PRIMARY KEY, v int)")
    # Rows written in a shuffled order; production: 1..3000. The run: 200 rows changed
    # (every 7th up to 1400), 100 removed (2901..3000), 150 added (3001..3150).
    production.execute(
        f"INSERT INTO t SELECT {key}, g FROM generate_series(1, 3000) g ORDER BY random()"
    )
    run.execute(
        f"INSERT INTO t SELECT {key}, CASE WHEN g % 7 = 0 AND g <= 1400 THEN -g ELSE g END"
        " FROM generate_series(1, 3150) g WHERE g <= 2900 OR g > 3000 ORDER BY random()"
    )
    oid = "SELECT 't'::regclass::oid"
    sides = [
        postgres_diff.Side(conn, "public", "t", int(conn.execute(oid).fetchone()[0]))
        for conn in (run, production)
    ]
    found = postgres_diff.diff_tables(sides[0], sides[1], "rows", examples=3)
    assert (found.added, found.changed, found.removed) == (150, 200, 100)
    if kind == "text":
        # Keyed by a hash of the key: the first in hash order, named by their value.
        assert set(found.examples["added"]) <= {f"k=k{g:05d}" for g in range(3001, 3151)}
        assert set(found.examples["removed"]) <= {f"k=k{g:05d}" for g in range(2901, 3001)}
        assert set(found.examples["changed"]) <= {f"k=k{g:05d}" for g in range(7, 1401, 7)}
        assert len(found.examples["added"]) == 3
        return
    scale, offset = (1, 0) if kind == "dense" else (10**12, -4 * 10**18)
    first = {"added": (3001, 3002, 3003), "changed": (7, 14, 21), "removed": (2901, 2902, 2903)}
    for what, keys in first.items():
        assert found.examples[what] == [f"k={g * scale + offset}" for g in keys], found.examples
