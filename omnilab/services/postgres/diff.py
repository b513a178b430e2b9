"""Which rows a run's table adds, changes and removes against production's, by primary key.

Each server computes, over its own table, two 64-bit numbers per row: the key (the
primary key itself when it is one integer column, else a hash of its columns) and the
row's hash (:func:`.checksum.column_hash_sql`, the promotion checksum's per-row term; a
hash of the row's text where a column type has no hash function). Both stream out as
binary ``COPY``, 26 bytes a row, read straight into numpy arrays; the two are joined by
position where the keys are integers close together (serial ids: a slot per possible key,
no sort), else by one sort of both sides' keys. No row's data crosses the wire, and
production is read in one ``REPEATABLE READ READ ONLY`` transaction of a read-only
session: nothing is written there, not even a temporary table.

Examples are named by their key: ``id=42``; a key that is not one integer column is
looked up by its hash afterwards (a few rows, on the side that holds them). A table
without a primary key is compared as a multiset of whole rows: a changed row is one
removed and one added, and the diff says so.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omnilab.services.postgres import checksum as postgres_checksum
from omnilab.services.postgres.checksum import column_hash_sql, table_columns
from omnilab.services.postgres.tables import quote
from omnilab.services.promotable import DIFF_EXAMPLES, ItemDiff, SinceFork

if TYPE_CHECKING:
    import psycopg

#: One row of ``COPY (SELECT key, hash) TO STDOUT (FORMAT binary)``: the field count,
#: then each field's length and its big-endian int8.
_ROW = np.dtype([("n", ">i2"), ("l1", ">i4"), ("key", ">i8"), ("l2", ">i4"), ("hash", ">i8")])
_INTEGERS = ("smallint", "integer", "bigint")
_CANONICAL = (
    "SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';"
    " SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 1;"
    " SET LOCAL bytea_output = 'hex'"
)


class Side:
    """One table on one server: its name, key columns and the row hash to use."""

    def __init__(
        self, conn: psycopg.Connection, schema: str, table: str, oid: int, dsn: str | None = None
    ) -> None:
        self.conn = conn
        #: Where ``psql`` reads the hashes from, when one is installed (the session's own
        #: settings are given to it: read-only for production).
        self.dsn = dsn
        self.name = quote(conn, schema, table)
        self.oid = oid
        self.columns = table_columns(conn, oid)
        rows = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary"
            " ORDER BY array_position(i.indkey, a.attnum)",
            (oid,),
        ).fetchall()
        self.key = [r[0] for r in rows]


def _key_sql(columns: list[tuple[str, str]], key: list[str]) -> tuple[str, bool]:
    """The key expression, and whether it is the key's own value (one integer column)."""
    types = dict(columns)
    if len(key) == 1 and types.get(key[0]) in _INTEGERS:
        return f"{quote_ident(key[0])}::int8", True
    return column_hash_sql([(k, types[k]) for k in key]), False


def quote_ident(name: str) -> str:
    from psycopg import sql

    return sql.Identifier(name).as_string(None)


def _row_sql(columns: list[tuple[str, str]], method: str) -> str:
    if method == "hash_text":
        return "hashtextextended(t::text, 0)"
    return column_hash_sql(columns)


#: The canonical settings for a ``psql`` session (``PGOPTIONS``), production's read-only.
_PGOPTIONS = (
    "-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c TimeZone=UTC -c extra_float_digits=1"
    " -c bytea_output=hex -c default_transaction_read_only=on"
)


def _read(side: Side, query: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys, hashes) of every row ``query`` returns, through binary COPY: by ``psql``
    into one buffer where it is installed (psycopg hands COPY's output over a row at a
    time, a Python call each: ten times slower for 26-byte rows), else by psycopg."""

    from omnilab.services.postgres import rows as postgres_copy

    copy = f"COPY ({query}) TO STDOUT (FORMAT binary)"
    psql = postgres_copy.psql_binary() if side.dsn else None
    if psql is not None and side.dsn is not None:
        done = postgres_copy.run_psql(psql, side.dsn, [copy], env={"PGOPTIONS": _PGOPTIONS})
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines() or ["failed"]
            raise RuntimeError(f"psql: {reason[-1]}")
        data = done.stdout
    else:
        chunks = []
        with side.conn.transaction():
            side.conn.execute(_CANONICAL)
            with side.conn.cursor().copy(copy) as out:
                for chunk in out:
                    chunks.append(bytes(chunk))
        data = b"".join(chunks)
    extension = int.from_bytes(data[15:19], "big")
    body = data[19 + extension : -2]
    rows = np.frombuffer(body, dtype=_ROW)
    return rows["key"].astype(np.int64), rows["hash"].astype(np.int64)


def _hash_works(conn: psycopg.Connection, side: Side) -> bool:
    """Whether every column type has a hash function (else rows are hashed as text)."""
    import psycopg

    try:
        with conn.transaction():
            conn.execute(f"SELECT {column_hash_sql(side.columns)} FROM {side.name} t LIMIT 0")
        return True
    except psycopg.errors.UndefinedFunction:
        return False


def diff_tables(
    run: Side,
    production: Side | None,
    unit: str,
    examples: int = DIFF_EXAMPLES,
    since: ForkBase | None = None,
) -> ItemDiff:
    """The run's table (``run``) against production's (``production``; None when
    production has no such table), counted and with up to ``examples`` of each kind.
    ``since``: the run's table was forked whole from production's; if production still
    holds what it held then, only the rows the run wrote since are compared
    (:func:`_since_fork`)."""
    began = time.monotonic()
    key_columns = run.key
    by = f"primary key ({', '.join(key_columns)})" if key_columns else "whole row"
    if production is None:
        count = run.conn.execute(f"SELECT count(*) FROM {run.name}").fetchone()
        added = int(count[0]) if count else 0
        return ItemDiff(
            by=by,
            unit=unit,
            added=added,
            production_has_it=False,
            notes=["production has no such table: every row is added"],
            seconds=round(time.monotonic() - began, 4),
        )
    notes = []
    if run.columns != production.columns:
        notes.append(
            "the columns differ from production's (names or types): rows with the same "
            "key count as changed"
        )
    method = "hash_columns"
    if not (_hash_works(run.conn, run) and _hash_works(production.conn, production)):
        method = "hash_text"
    if key_columns and not set(key_columns) <= {c for c, _ in production.columns}:
        notes.append(
            f"production's table has no column {', '.join(key_columns)}: rows compared whole"
        )
        key_columns = []
        by = "whole row"
    incremental = None
    if since is not None and key_columns and not notes:
        incremental = _since_fork(run, production, since, key_columns, method, examples)
    if incremental is not None:
        counts, found, wrote = incremental
        exact_key = _key_sql(run.columns, key_columns)[1]
        notes = [
            f"compared since the fork: the {wrote:,} {unit} the run wrote (production"
            " unchanged since; the others are the fork's verified copy)"
        ]
    else:
        counts, found, exact_key = _whole(run, production, key_columns, method, examples, notes)
    return ItemDiff(
        by=by,
        unit=unit,
        added=counts["added"],
        changed=counts["changed"],
        removed=counts["removed"],
        examples=_name_examples(run, production, found, key_columns, exact_key),
        incremental=incremental is not None,
        notes=notes,
        seconds=round(time.monotonic() - began, 4),
    )


def _whole(
    run: Side,
    production: Side,
    key_columns: list[str],
    method: str,
    examples: int,
    notes: list[str],
) -> tuple[dict[str, int], dict[str, Any], bool]:
    """Counts and examples from every row of both tables (the module's docstring); and
    whether the key is the key's own value."""
    queries = []
    exact_key = False
    for side in (run, production):
        row = _row_sql(side.columns, method)
        if key_columns:
            key, exact_key = _key_sql(side.columns, key_columns)
        else:
            key = row
        queries.append(f"SELECT {key}, {row} FROM {side.name} t")
    with ThreadPoolExecutor(max_workers=1) as pool:
        theirs = pool.submit(_read, production, queries[1])
        ours = _read(run, queries[0])
        prod = theirs.result()
    if key_columns:
        counts, found = _by_key(ours, prod, examples)
    else:
        notes.append(
            "no primary key: rows are compared whole; a changed row is one removed, one added"
        )
        counts, found = _by_row(ours, prod, examples)
    return counts, found, exact_key


Arrays = tuple[np.ndarray, np.ndarray]


# -- since the fork -----------------------------------------------------------------------


@dataclass(frozen=True)
class ForkBase:
    """The run's table as its fork left it: ``xmin``, the transaction that loaded every
    row (one ``COPY ... FREEZE``), and ``checksum``, production's at fork time, which
    the copy was verified against."""

    xmin: int
    checksum: dict[str, Any]
    #: The run's server's next transaction id (64 bits) just after the load.
    next_xid: int


def fork_base(since: SinceFork | None, table: str) -> ForkBase | None:
    """What a diff since the fork starts from, for the run's ``table`` (``schema.name``):
    only a table forked whole (a part would leave out production rows the run never
    had), from a production the promotion found unchanged since (the diff checks again,
    in its own snapshot); None otherwise."""
    if since is None or since.changed or since.partial or not since.at_fork:
        return None
    xmin, next_xid = since.run.get("xmin"), since.run.get("next_xid")
    if not isinstance(xmin, int) or not isinstance(next_xid, int):
        return None
    if since.run.get("table") != table:
        return None
    return ForkBase(xmin, dict(since.at_fork), next_xid)


#: More rows than this written since the fork (or more than a quarter of the table): the
#: whole table is compared instead, as looking each key up in production would cost more.
SINCE_FORK_ROWS = 100_000

#: Production's keys read from the lowest for the removed rows' examples (the count needs
#: no keys), before the key range is searched by counts (:func:`_first_removed`).
_KEY_CHUNK = 8192


def _since_fork(
    run: Side,
    production: Side,
    base: ForkBase,
    key_columns: list[str],
    method: str,
    examples: int,
) -> tuple[dict[str, int], dict[str, Any], int] | None:
    """The diff from the rows the run wrote since its fork; None where it does not hold.

    A row still carrying the fork's load transaction (``xmin``) is one the run has not
    written since: PostgreSQL gives every new row version its writer's transaction id,
    and keeps the loader's through ``VACUUM FREEZE``, ``VACUUM FULL`` and ``CLUSTER``. Such
    a row equals production's row of the same key at fork time, which the fork verified
    by checksum. If production's checksum, in this diff's snapshot, is still the fork's,
    production holds exactly those rows; then:

    - the rows the run wrote are hashed (one scan of the run's table, which also counts
      the others) and looked up by key in production: added where production has no such
      key, changed where the hashes differ;
    - the rows removed are counted: production's rows, less the run's unwritten ones
      (each is one of production's), less the written ones production also has. Their
      examples come from both sides' lowest keys, then from the buckets of the key range
      where production counts more rows (:func:`_first_removed`).

    No row is streamed out whole, and neither side's table is hashed, but for production's
    checksum, which its server computes with parallel workers. Only for a primary key of
    one integer column (the index answers the lookups and the key order).
    """
    import psycopg

    conn = production.conn
    key_sql, exact = _key_sql(run.columns, key_columns)
    if not exact or conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        return None  # production must be read in one snapshot: the caller's transaction
    state = run.conn.execute(
        "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = %s AND attisdropped),"
        " txid_snapshot_xmax(txid_current_snapshot())",
        (run.oid,),
    ).fetchone()
    if state is None or state[0]:
        # A column dropped since the fork (and maybe added again under its name: the
        # columns would still match production's) changed rows without writing them.
        return None
    if int(state[1]) - base.next_xid >= 2**31:
        # Transaction ids are 32 bits on rows: after 2**31 more, a new row's may equal
        # the fork's load's.
        return None
    row_sql = _row_sql(run.columns, method)
    loader = f"'{int(base.xmin)}'::xid"
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            mine = pool.submit(_written, run, key_sql, row_sql, loader)
            method_then = str(base.checksum.get("method", ""))
            now = postgres_checksum.checksum(conn, production.oid, production.name, method_then)
            unwritten, keys, hashes = mine.result()
    except psycopg.Error:
        return None
    if now != base.checksum:
        return None  # production changed since the fork: the whole table is compared
    if len(keys) > min(SINCE_FORK_ROWS, max(int(now["rows"]) // 4, 1000)):
        return None
    theirs = _lookup_hashes(production, keys, key_columns[0], method)
    if theirs is None:
        return None
    pkeys, phashes = theirs
    _, mine_at, theirs_at = np.intersect1d(keys, pkeys, assume_unique=True, return_indices=True)
    added = np.setdiff1d(keys, pkeys, assume_unique=True)  # sorted
    changed = np.sort(keys[mine_at][hashes[mine_at] != phashes[theirs_at]])
    removed = int(now["rows"]) - unwritten - len(pkeys)
    if removed < 0:
        return None  # not the fork's base after all
    try:
        with conn.transaction():  # a savepoint: a failed read leaves the snapshot usable
            gone = _first_removed(
                run, production, key_columns[0], min(examples, removed), loader, pkeys
            )
    except psycopg.Error:
        return None
    if gone is None:
        return None
    counts = {"added": len(added), "changed": len(changed), "removed": removed}
    found = {
        "added": [int(k) for k in added[:examples]],
        "changed": [int(k) for k in changed[:examples]],
        "removed": gone,
    }
    return counts, found, len(keys)


def _written(run: Side, key_sql: str, row_sql: str, loader: str) -> tuple[int, Any, Any]:
    """How many of the run's rows are the fork's (unwritten), and the others' keys and
    hashes (sorted by key), in one scan."""
    with run.conn.transaction():
        run.conn.execute(_CANONICAL)
        rows = run.conn.execute(
            f"SELECT {key_sql}, {row_sql} FROM {run.name} t WHERE t.xmin <> {loader}"
            f" UNION ALL SELECT NULL, count(*) FROM {run.name} t WHERE t.xmin = {loader}"
        ).fetchall()
    unwritten = next(int(h) for k, h in rows if k is None)
    pairs = np.array([(k, h) for k, h in rows if k is not None], dtype=np.int64).reshape(-1, 2)
    order = np.argsort(pairs[:, 0])
    return unwritten, pairs[order, 0], pairs[order, 1]


def _lookup_hashes(side: Side, keys: np.ndarray, column: str, method: str) -> Arrays | None:
    """(key, row hash) of the rows of ``keys`` in ``side``'s table, sorted by key, by its
    primary key's index, in its session's transaction."""
    import psycopg

    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = f"t.{quote_ident(column)}"
    try:
        with side.conn.transaction():
            side.conn.execute(_CANONICAL)
            found = side.conn.execute(
                f"SELECT {key}::int8, {_row_sql(side.columns, method)} FROM {side.name} t"
                f" WHERE {key} = ANY(%s::int8[]) ORDER BY {key}",
                ([int(k) for k in keys],),
            ).fetchall()
    except psycopg.Error:
        return None
    pairs = np.array(found, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def _first_removed(
    run: Side, production: Side, column: str, want: int, loader: str, kept: np.ndarray
) -> list[int] | None:
    """The ``want`` lowest keys production has and the run has not.

    First both sides' keys from the lowest, one chunk of them (removed rows spread over
    the table show there). Otherwise the key range is cut in buckets that each side
    counts at once, production its rows, the run its unwritten ones (``loader``), plus
    the written ones production holds (``kept``, sorted): a bucket where production
    counts more holds removed keys, which are then read from both sides. So rows removed
    at the far end (the newest) cost two counts, not a read of every key. None for keys
    spread over more than 2**62 (the buckets' arithmetic would overflow)."""
    if want <= 0:
        return []
    key = f"t.{quote_ident(column)}"
    theirs = [
        int(r[0])
        for r in production.conn.execute(
            f"SELECT {key} FROM {production.name} t ORDER BY {key} LIMIT {_KEY_CHUNK}"
        )
    ]
    if not theirs:
        return []
    found = _missing(run, key, theirs)[:want]
    if len(found) == want or len(theirs) < _KEY_CHUNK:
        return found
    low = theirs[-1] + 1  # the first chunk is done
    row = production.conn.execute(f"SELECT max({key}) FROM {production.name} t").fetchone()
    high = int(row[0]) if row and row[0] is not None else low - 1
    if high < low:
        return found
    if high - low >= 2**62:
        return None
    width = -(-(high - low + 1) // _BUCKETS)  # ceil: at most _BUCKETS buckets
    bucket = f"({key} - {low}) / {width}"
    ranged = f"{key} BETWEEN {low} AND {high}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        mine = pool.submit(
            run.conn.execute,
            f"SELECT {bucket}, count(*) FROM {run.name} t WHERE {ranged} AND t.xmin = {loader}"
            " GROUP BY 1",
        )
        prod_rows = production.conn.execute(
            f"SELECT {bucket}, count(*) FROM {production.name} t WHERE {ranged} GROUP BY 1"
        ).fetchall()
        run_rows = mine.result().fetchall()
    deficit = np.zeros(_BUCKETS + 1, np.int64)
    for b, n in prod_rows:
        deficit[int(b)] += int(n)
    for b, n in run_rows:
        deficit[int(b)] -= int(n)
    inside = kept[(kept >= low) & (kept <= high)]
    np.subtract.at(deficit, (inside - low) // width, 1)
    for b in np.flatnonzero(deficit > 0):
        start = low + int(b) * width
        keys = [
            int(r[0])
            for r in production.conn.execute(
                f"SELECT {key} FROM {production.name} t WHERE {key} BETWEEN %s AND %s"
                f" ORDER BY {key}",
                (start, min(start + width - 1, high)),
            )
        ]
        found += _missing(run, key, keys)[: want - len(found)]
        if len(found) >= want:
            break
    return found


#: Buckets the key range is cut in to find the removed rows' examples beyond the first
#: chunk of keys.
_BUCKETS = 1024


def _missing(run: Side, key: str, theirs: list[int]) -> list[int]:
    """Of production's keys ``theirs`` (sorted), those the run's table does not hold."""
    mine = {
        int(r[0])
        for r in run.conn.execute(
            f"SELECT {key} FROM {run.name} t WHERE {key} BETWEEN %s AND %s",
            (theirs[0], theirs[-1]),
        )
    }
    return [k for k in theirs if k not in mine]


#: Keys spread over at most this many times the rows are joined by position (a slot per
#: possible key) rather than by sorting: serial ids, as most primary keys are.
DENSE_SPAN = 3


def _by_key(ours: Arrays, theirs: Arrays, examples: int) -> tuple[dict[str, int], dict[str, Any]]:
    """Added, changed and removed keys, each in key order (the first examples are then the
    same for the same data, whatever order the servers scanned their rows in)."""
    keys, hashes = ours
    pkeys, phashes = theirs
    if len(keys) and len(pkeys):
        low = min(int(keys.min()), int(pkeys.min()))
        span = max(int(keys.max()), int(pkeys.max())) - low + 1
        dense = span <= DENSE_SPAN * max(len(keys), len(pkeys))
    else:
        dense = False
    if dense:
        added, changed, removed = _join_dense(keys, hashes, pkeys, phashes, low, span)
    else:
        added, changed, removed = _join_sorted(keys, hashes, pkeys, phashes)
    counts = {"added": len(added), "changed": len(changed), "removed": len(removed)}
    found = {
        "added": [int(k) for k in added[:examples]],
        "changed": [int(k) for k in changed[:examples]],
        "removed": [int(k) for k in removed[:examples]],
    }
    return counts, found


def _join_dense(
    keys: np.ndarray,
    hashes: np.ndarray,
    pkeys: np.ndarray,
    phashes: np.ndarray,
    low: int,
    span: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One slot per possible key: linear in the rows, no sort (a sort of two million keys
    costs more than reading them from both servers)."""
    ours = np.zeros(span, bool)
    theirs = np.zeros(span, bool)
    ours[keys - low] = True
    theirs[pkeys - low] = True
    mine = np.zeros(span, np.int64)
    prods = np.zeros(span, np.int64)
    mine[keys - low] = hashes
    prods[pkeys - low] = phashes
    both = ours & theirs
    added = np.flatnonzero(ours & ~theirs) + low
    changed = np.flatnonzero(both & (mine != prods)) + low
    removed = np.flatnonzero(theirs & ~ours) + low
    return added, changed, removed


def _join_sorted(
    keys: np.ndarray, hashes: np.ndarray, pkeys: np.ndarray, phashes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Any keys (a hash of several key columns spreads over 64 bits): one sort of both
    sides' keys together, each key unique on its side, so a key met twice is on both."""
    every = np.concatenate([keys, pkeys])
    order = np.argsort(every, kind="stable")  # stable: the run's row first in a pair
    ordered = every[order]
    from_run = order < len(keys)
    pair = np.zeros(len(ordered), bool)
    pair[:-1] = ordered[:-1] == ordered[1:]
    second = np.zeros(len(ordered), bool)
    second[1:] = pair[:-1]
    alone = ~(pair | second)
    every_hash = np.concatenate([hashes, phashes])[order]
    firsts = np.flatnonzero(pair)
    changed = ordered[firsts[every_hash[firsts] != every_hash[firsts + 1]]]
    added = ordered[alone & from_run]
    removed = ordered[alone & ~from_run]
    return added, changed, removed


def _by_row(ours: Arrays, theirs: Arrays, examples: int) -> tuple[dict[str, int], dict[str, Any]]:
    """Multisets of row hashes: how many more of each the run has, or production has."""
    mine, my_counts = np.unique(ours[1], return_counts=True)
    prods, prod_counts = np.unique(theirs[1], return_counts=True)
    every = np.union1d(mine, prods)
    a = np.zeros(len(every), np.int64)
    b = np.zeros(len(every), np.int64)
    a[np.searchsorted(every, mine)] = my_counts
    b[np.searchsorted(every, prods)] = prod_counts
    more, fewer = a - b, b - a
    counts = {
        "added": int(more[more > 0].sum()),
        "changed": 0,
        "removed": int(fewer[fewer > 0].sum()),
    }
    found = {
        "added": [int(h) for h in every[more > 0][:examples]],
        "changed": [],
        "removed": [int(h) for h in every[fewer > 0][:examples]],
    }
    return counts, found


def _name_examples(
    run: Side, production: Side, found: dict[str, Any], key: list[str], exact: bool
) -> dict[str, list[str]]:
    """Examples as people read them: ``id=42``; ``(a, b)=(1, x)`` for a key looked up by
    its hash; a row's text for a table compared whole."""
    if key and exact:
        return {kind: [f"{key[0]}={k}" for k in keys] for kind, keys in found.items()}
    out: dict[str, list[str]] = {}
    for kind, hashes in found.items():
        if not hashes:
            out[kind] = []
            continue
        side = production if kind == "removed" else run
        if key:
            what = column_hash_sql([(k, dict(side.columns)[k]) for k in key])
            shown = ", ".join(f"t.{quote_ident(k)}" for k in key)
            label = key[0] if len(key) == 1 else f"({', '.join(key)})"
            text = f"ROW({shown})::text" if len(key) > 1 else f"t.{quote_ident(key[0])}::text"
        else:
            what = _row_sql(side.columns, "hash_columns")
            label, text = "", "t::text"
        rows = _lookup(side, what, text, hashes)
        out[kind] = [f"{label}={value}" if label else value for value in rows]
    return out


def _lookup(side: Side, what: str, text: str, hashes: list[int]) -> list[str]:
    import psycopg

    try:
        with side.conn.transaction():
            side.conn.execute(_CANONICAL)
            rows = side.conn.execute(
                f"SELECT {text} FROM {side.name} t WHERE ({what}) = ANY(%s) ORDER BY 1 LIMIT %s",
                (hashes, len(hashes)),
            ).fetchall()
    except psycopg.errors.UndefinedFunction:
        return [f"#{h & 0xFFFF_FFFF_FFFF_FFFF:016x}" for h in hashes]
    return [str(r[0]) for r in rows]
