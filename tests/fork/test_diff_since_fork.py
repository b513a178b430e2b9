"""The PostgreSQL diff since the fork (only the rows the run wrote are compared) gives
exactly what the whole diff gives, and steps aside where its premise does not hold.

Each test forks a table from production's real server into a run's real server, as a
run's seeds are forked, writes into the run's copy (or production), then computes the
diff both ways: by the fork's base and by every row of both tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from omnilab import Postgres, Stack
from omnilab.config import get_settings
from omnilab.fork import Fork
from omnilab.progress import QuietReporter
from omnilab.promote import PostgresTable
from omnilab.services.postgres import diff as postgres_diff
from omnilab.services.postgres.fork import READ_ONLY_OPTIONS, endpoint_dsn
from omnilab.services.promotable import ItemDiff
from tests.support.promotion_support import Production

ROWS = 3000


@pytest.fixture(scope="module")
def run_stack() -> Iterator[Stack]:
    with Stack(Postgres(), runtime="local", reporter=QuietReporter()) as stack:
        yield stack


def forked(production: Production, run_stack: Stack) -> postgres_diff.ForkBase:
    """Production's ``items`` table, forked into the run's server; the fork's base."""
    with production.pg() as conn:
        conn.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, n int, at timestamptz)"
        )
        conn.execute(
            "INSERT INTO items SELECT g, 'item ' || g, g % 7, '2026-01-01'::timestamptz + g * "
            f"interval '1 minute' FROM generate_series(1, {ROWS}) g"
        )
    run_stack.postgres.execute("DROP TABLE IF EXISTS items")
    fork = Fork.prepare([PostgresTable("items")], get_settings(), QuietReporter())
    provenance = fork.copy(run_stack)[0]
    run = provenance["run"]
    assert isinstance(run["xmin"], int) and run["next_xid"] > run["xmin"]
    checksum = provenance["production"]["checksum"]
    return postgres_diff.ForkBase(run["xmin"], checksum, run["next_xid"])


def both_ways(
    production: Production, run_stack: Stack, base: postgres_diff.ForkBase
) -> tuple[ItemDiff, ItemDiff]:
    """The diff by the fork's base, and the whole diff, each in a read-only production
    session of its own, as a promotion reads production."""
    run_conn = run_stack.postgres
    out = []
    for since in (base, None):
        with psycopg.connect(production.postgres_url, options=READ_ONLY_OPTIONS) as prod:
            prod.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            prod.read_only = True
            prod.execute("SELECT 1")
            oid = prod.execute("SELECT 'items'::regclass::oid").fetchone()
            run_oid = run_conn.execute("SELECT 'items'::regclass::oid").fetchone()
            assert oid is not None and run_oid is not None
            ours = postgres_diff.Side(
                run_conn,
                "public",
                "items",
                run_oid[0],
                endpoint_dsn(run_stack.endpoint("postgres")),
            )
            theirs = postgres_diff.Side(prod, "public", "items", oid[0], production.postgres_url)
            out.append(postgres_diff.diff_tables(ours, theirs, "rows", since=since))
    return out[0], out[1]


def same(a: ItemDiff, b: ItemDiff) -> bool:
    return (a.added, a.changed, a.removed, a.examples) == (
        b.added,
        b.changed,
        b.removed,
        b.examples,
    )


def test_only_the_rows_written_since_the_fork_are_compared_and_the_diff_is_exact(
    production: Production, run_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = forked(production, run_stack)
    # The removed rows' examples: one within the first chunk of production's keys (100
    # here), the others beyond it, found by counting buckets of the key range.
    monkeypatch.setattr(postgres_diff, "_KEY_CHUNK", 100)
    run = run_stack.postgres
    run.execute("UPDATE items SET name = 'renamed' WHERE id IN (2950, 2960, 2970)")
    run.execute("UPDATE items SET n = n WHERE id = 2980")  # written, but the same
    run.execute("DELETE FROM items WHERE id IN (2990, 2991, 2500, 50)")
    run.execute("DELETE FROM items WHERE id IN (2001, 2002)")
    run.execute(  # the same row back; and another back with a change
        "INSERT INTO items VALUES (2001, 'item 2001', 2001 % 7,"
        " '2026-01-01'::timestamptz + 2001 * interval '1 minute'),"
        " (2002, 'item 2002', -1, '2026-01-01'::timestamptz + 2002 * interval '1 minute')"
    )
    run.execute("INSERT INTO items VALUES (5001, 'new', 0, now()), (5000, 'new', 0, now())")
    run.execute("VACUUM FULL items")  # rewrites the table; every row keeps its writer
    run.execute("VACUUM FREEZE items")
    incremental, whole = both_ways(production, run_stack, base)
    assert incremental.incremental and not whole.incremental
    assert "the 8 rows the run wrote" in incremental.notes[0], incremental.notes
    assert same(incremental, whole), (incremental, whole)
    assert (incremental.added, incremental.changed, incremental.removed) == (2, 4, 4)
    assert incremental.examples == {
        "added": ["id=5000", "id=5001"],
        "changed": ["id=2002", "id=2950", "id=2960", "id=2970"],
        "removed": ["id=50", "id=2500", "id=2990", "id=2991"],
    }


def test_rows_removed_at_the_end_of_the_key_range_are_found_by_counts(
    production: Production, run_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest rows removed: past the first chunk of keys (100 here), the buckets'
    counts say where they are, and only those buckets' keys are read."""
    base = forked(production, run_stack)
    monkeypatch.setattr(postgres_diff, "_KEY_CHUNK", 100)
    read: list[tuple[int, ...]] = []
    missing = postgres_diff._missing
    monkeypatch.setattr(
        postgres_diff,
        "_missing",
        lambda run, key, theirs: read.append((theirs[0], len(theirs))) or missing(run, key, theirs),
    )
    run_stack.postgres.execute(f"DELETE FROM items WHERE id > {ROWS - 7}")
    incremental, whole = both_ways(production, run_stack, base)
    assert incremental.incremental and same(incremental, whole), (incremental, whole)
    assert incremental.removed == 7
    assert incremental.examples["removed"] == [f"id={ROWS - 6 + i}" for i in range(5)]
    # The first chunk, then a bucket or two at the end (a few keys each), not every key.
    assert read[0] == (1, 100) and sum(n for _, n in read[1:]) <= 10, read


def test_nothing_written_since_the_fork_is_an_identical_table(
    production: Production, run_stack: Stack
) -> None:
    base = forked(production, run_stack)
    incremental, whole = both_ways(production, run_stack, base)
    assert incremental.incremental and incremental.identical and whole.identical


def test_a_fork_older_than_two_billion_transactions_is_compared_whole(
    production: Production, run_stack: Stack
) -> None:
    """Row transaction ids are 32 bits: once 2**31 more have gone by in the run's server,
    a row written since might carry the fork's load's id again."""
    base = forked(production, run_stack)
    run_stack.postgres.execute("UPDATE items SET n = -1 WHERE id = 9")
    aged = dataclasses.replace(base, next_xid=base.next_xid - 2**31)
    incremental, whole = both_ways(production, run_stack, aged)
    assert not incremental.incremental and same(incremental, whole)
    assert (whole.added, whole.changed, whole.removed) == (0, 1, 0)


@pytest.mark.parametrize(
    ("case", "writes", "counts"),
    [
        (
            "production written since the fork",
            lambda run, prod: prod.execute("UPDATE items SET n = 99 WHERE id = 7"),
            (0, 1, 0),
        ),
        (
            "a column of the run's dropped and added again (rows not rewritten)",
            lambda run, prod: (
                run.execute("ALTER TABLE items DROP COLUMN at"),
                run.execute("ALTER TABLE items ADD COLUMN at timestamptz"),
            ),
            (0, ROWS, 0),
        ),
        (
            "most of the run's rows rewritten",
            lambda run, prod: run.execute("UPDATE items SET n = n + 1 WHERE id > 100"),
            (0, ROWS - 100, 0),
        ),
    ],
)
def test_the_whole_table_is_compared_where_the_forks_base_does_not_hold(
    production: Production,
    run_stack: Stack,
    case: str,
    writes: Callable[[psycopg.Connection, psycopg.Connection], Any],
    counts: tuple[int, int, int],
) -> None:
    base = forked(production, run_stack)
    with production.pg() as prod:
        writes(run_stack.postgres, prod)
    incremental, whole = both_ways(production, run_stack, base)
    assert not incremental.incremental, case
    assert same(incremental, whole), (case, incremental, whole)
    assert (whole.added, whole.changed, whole.removed) == counts, case
