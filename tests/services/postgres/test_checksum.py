"""The PostgreSQL table checksum promotion compares: equal for equal rows in any order,
different for any change, on a real server; and what the staged load leaves behind.

Each change below is made to a copy of a table holding many column types (NULLs
included); the copy's checksum must differ from the original's, and must come back
when the change is undone.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from omnilab.progress import QuietReporter
from omnilab.promote import promote
from omnilab.services.postgres.checksum import checksum, column_hash_sql
from tests.support.promotion_support import Production, run_promotable

COLUMNS = """
    id bigint, small smallint, i integer, r real, d double precision, n numeric(10,2),
    t text, v varchar(20), j jsonb, u uuid, iv interval, ts timestamp,
    tz timestamptz(3), day date, flag boolean, raw bytea, ints integer[], words text[],
    mood mood, pos positive
"""
ROWS = """
    INSERT INTO {t} SELECT g, g % 7, g * 3, g / 3.0, g / 7.0, g / 9.0, 'text ' || g,
      'v' || (g % 5), jsonb_build_object('g', g, 'odd', g % 2 = 1), md5(g::text)::uuid,
      g * interval '1 minute', timestamp '2024-01-01' + g * interval '1 hour',
      timestamptz '2024-01-01 00:00:00.123+02' + g * interval '1 second',
      date '2024-01-01' + g, g % 3 = 0, decode(md5(g::text), 'hex'), ARRAY[g, g + 1],
      ARRAY['a' || g, 'b'], (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood, g
    FROM generate_series(1, 200) g;
    INSERT INTO {t} (id) VALUES (0);
    INSERT INTO {t} VALUES (-1, NULL, NULL, 'NaN', '-Infinity', NULL, '', NULL, 'null',
      NULL, NULL, 'infinity', '-infinity', NULL, NULL, '', '{{}}', ARRAY[NULL, 'x'],
      NULL, NULL)
"""


def _sum(conn: psycopg.Connection, table: str, method: str = "hash_columns") -> dict[str, Any]:
    oid = conn.execute("SELECT %s::regclass::oid", (table,)).fetchone()
    assert oid is not None
    return checksum(conn, oid[0], table, method)


@pytest.fixture(name="pg")
def pg_fixture(production: Production) -> Any:
    with production.pg() as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute("CREATE DOMAIN positive AS integer CHECK (VALUE > 0)")
        for table in ("a", "b"):
            conn.execute(f"CREATE TABLE {table} ({COLUMNS})")
        conn.execute(ROWS.format(t="a"))
        # The same rows, written in another order (pages and positions differ).
        conn.execute("INSERT INTO b SELECT * FROM a ORDER BY md5(id::text)")
        yield conn


def test_equal_rows_in_any_order_give_the_same_checksum(pg: psycopg.Connection) -> None:
    original = _sum(pg, "a")
    assert original == _sum(pg, "b")
    assert original["rows"] == 202 and original["method"] == "hash_columns"
    # Session settings do not change it (timestamptz is hashed as its UTC timestamp).
    pg.execute("SET TimeZone = 'Asia/Kolkata'; SET DateStyle = 'German'")
    assert _sum(pg, "b") == original
    # Every column takes part: its expression names them all.
    types = [
        (name, typ)
        for name, typ in pg.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'a'::regclass AND attnum > 0 ORDER BY attnum"
        ).fetchall()
    ]
    expression = column_hash_sql(types)
    assert all(f'"{name}"' in expression for name, _ in types)


CHANGES = [
    # (change, undo)
    ("UPDATE b SET i = i + 1 WHERE id = 5", "UPDATE b SET i = i - 1 WHERE id = 5"),
    ("UPDATE b SET d = -d WHERE id = 7", "UPDATE b SET d = -d WHERE id = 7"),
    ("UPDATE b SET n = 0.01 WHERE id = 0", "UPDATE b SET n = NULL WHERE id = 0"),
    ("UPDATE b SET t = NULL WHERE id = 9", "UPDATE b SET t = 'text 9' WHERE id = 9"),
    ("UPDATE b SET t = '' WHERE id = 0", "UPDATE b SET t = NULL WHERE id = 0"),
    (
        "UPDATE b SET j = j || '{\"x\": 1}' WHERE id = 11",
        "UPDATE b SET j = j - 'x' WHERE id = 11",
    ),
    (
        "UPDATE b SET tz = tz + interval '1 millisecond' WHERE id = 12",
        "UPDATE b SET tz = tz - interval '1 millisecond' WHERE id = 12",
    ),
    ("UPDATE b SET tz = 'infinity' WHERE id = -1", "UPDATE b SET tz = '-infinity' WHERE id = -1"),
    ("UPDATE b SET flag = NOT flag WHERE id = 13", "UPDATE b SET flag = NOT flag WHERE id = 13"),
    (
        "UPDATE b SET raw = raw || '\\x00' WHERE id = 14",
        "UPDATE b SET raw = substring(raw from 1 for 16) WHERE id = 14",
    ),
    ("UPDATE b SET ints[2] = 0 WHERE id = 15", "UPDATE b SET ints[2] = 16 WHERE id = 15"),
    ("UPDATE b SET mood = 'sad' WHERE id = 17", "UPDATE b SET mood = 'happy' WHERE id = 17"),
    ("UPDATE b SET pos = pos + 1 WHERE id = 18", "UPDATE b SET pos = pos - 1 WHERE id = 18"),
    ("UPDATE b SET id = 1000 WHERE id = 58", "UPDATE b SET id = 58 WHERE id = 1000"),
    (
        "UPDATE b SET small = small + 1 WHERE id = 50",
        "UPDATE b SET small = small - 1 WHERE id = 50",
    ),
    ("UPDATE b SET r = r * 2 WHERE id = 51", "UPDATE b SET r = r / 2 WHERE id = 51"),
    ("UPDATE b SET v = 'w' WHERE id = 52", "UPDATE b SET v = 'v2' WHERE id = 52"),
    (
        "UPDATE b SET u = md5('x')::uuid WHERE id = 53",
        "UPDATE b SET u = md5('53')::uuid WHERE id = 53",
    ),
    (
        "UPDATE b SET iv = iv + interval '1 microsecond' WHERE id = 54",
        "UPDATE b SET iv = iv - interval '1 microsecond' WHERE id = 54",
    ),
    (
        "UPDATE b SET ts = ts + interval '1 microsecond' WHERE id = 55",
        "UPDATE b SET ts = ts - interval '1 microsecond' WHERE id = 55",
    ),
    ("UPDATE b SET day = day + 1 WHERE id = 56", "UPDATE b SET day = day - 1 WHERE id = 56"),
    ("UPDATE b SET words[2] = 'c' WHERE id = 57", "UPDATE b SET words[2] = 'b' WHERE id = 57"),
    # Values moved between rows of one column: each column's sum alone would not see it.
    (
        "UPDATE b SET t = CASE id WHEN 20 THEN 'text 21' ELSE 'text 20' END WHERE id IN (20, 21)",
        "UPDATE b SET t = CASE id WHEN 20 THEN 'text 20' ELSE 'text 21' END WHERE id IN (20, 21)",
    ),
    # Values moved between two columns of one type in a row.
    ("UPDATE b SET i = id, pos = i WHERE id = 30", "UPDATE b SET i = pos, pos = i WHERE id = 30"),
    # A row repeated in place of another.
    ("DELETE FROM b WHERE id = 40", "INSERT INTO b SELECT * FROM a WHERE id = 40"),
]


@pytest.mark.parametrize(("change", "undo"), CHANGES, ids=[c for c, _ in CHANGES])
def test_any_change_changes_the_checksum(pg: psycopg.Connection, change: str, undo: str) -> None:
    original = _sum(pg, "a")
    pg.execute(change)
    if change.startswith("DELETE"):
        pg.execute("INSERT INTO b SELECT * FROM a WHERE id = 41")  # same count, 41 twice
    changed = _sum(pg, "b")
    assert changed != original
    assert changed["sum"] != original["sum"]
    if change.startswith("DELETE"):
        pg.execute("DELETE FROM b WHERE ctid = (SELECT max(ctid) FROM b WHERE id = 41)")
    pg.execute(undo)
    assert _sum(pg, "b") == original


def test_a_type_without_a_hash_function_needs_the_text_method(pg: psycopg.Connection) -> None:
    pg.execute("CREATE TABLE shapes (id int, at point, doc json)")
    pg.execute("INSERT INTO shapes VALUES (1, '(1,2)', '{\"a\": 1}'), (2, NULL, NULL)")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        _sum(pg, "shapes")
    text = _sum(pg, "shapes", "hash_text")
    pg.execute("UPDATE shapes SET at = '(1,3)' WHERE id = 1")
    assert _sum(pg, "shapes", "hash_text")["sum"] != text["sum"]


def test_a_promoted_table_is_frozen_analyzed_and_verified(production: Production) -> None:
    """The rows are loaded FREEZE (pages all-visible: nothing for production's vacuum
    to do), statistics exist from the start, and the counts and checksums recorded are
    those of the faster method."""
    run = run_promotable(n_rows=3000)
    result = promote(run.id, reporter=QuietReporter())
    assert result.status == "succeeded"
    [table] = [i for i in result.items if i.plan.kind == "postgres_table"]
    assert table.checksums["source"] == table.checksums["target"]
    assert table.checksums["target"]["method"] == "hash_columns"
    assert table.counts == {"source": 3000, "target": 3000}
    with production.pg() as conn:
        pages, visible = conn.execute(
            "SELECT relpages, relallvisible FROM pg_class WHERE oid = 'public.scores'::regclass"
        ).fetchone()
        assert pages > 0 and visible == pages
        stats = {
            r[0] for r in conn.execute("SELECT attname FROM pg_stats WHERE tablename = 'scores'")
        }
        assert {"id", "name", "score", "payload", "at"} <= stats


def test_statistics_of_index_expressions_are_gathered_once_the_index_exists(
    production: Production, production_servers: Any
) -> None:
    """A table with an expression index is analyzed after its builds: the planner has
    statistics on the expression from the first query on. (Source and production are
    two schemas of one server here; the promotion treats them as two servers.)"""
    import uuid

    from omnilab.config import get_settings
    from omnilab.services.postgres.promotion import PostgresTable
    from omnilab.services.promotable import ItemRecord, Progress

    with production.pg() as conn:
        conn.execute("CREATE SCHEMA lab")
        conn.execute("CREATE TABLE lab.words (id int PRIMARY KEY, word text)")
        conn.execute("CREATE INDEX words_lower_idx ON lab.words (lower(word))")
        conn.execute(
            "INSERT INTO lab.words SELECT g, 'Word' || (g % 50) FROM generate_series(1, 2000) g"
        )
    item = PostgresTable("lab.words", target="public.words")
    promoter = item.promoter(
        get_settings(), uuid.uuid4().hex, production_servers.endpoint("postgres"), QuietReporter()
    )
    try:
        plan = promoter.plan("fail")
        assert plan.action == "create"
        record = ItemRecord(item=item.to_dict(), plan=plan)
        promoter.stage(record, Progress(QuietReporter(), plan.label, plan.source_count, "rows"))
        promoter.switch(record)
    finally:
        promoter.close()
    assert record.checksums["source"] == record.checksums["target"]
    with production.pg() as conn:
        expression = conn.execute(
            "SELECT n_distinct FROM pg_stats WHERE schemaname = 'public'"
            " AND tablename = 'words_lower_idx'"
        ).fetchone()
        assert expression == (50,)
        columns = conn.execute(
            "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = 'words'"
        ).fetchone()
        assert columns == (2,)
