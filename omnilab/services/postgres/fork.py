"""Forking PostgreSQL tables from production into a run's database.

Promotion's code in the other direction: the table is rebuilt from production's catalogs
(:mod:`.tables`), its rows stream by binary ``COPY`` (:mod:`.rows`: two ``psql``
processes, or psycopg where no ``psql`` is installed), and both servers compute the
checksum of :mod:`.checksum` over their own rows.

**One snapshot for every table.** The forker opens one session on production, read-only
(``default_transaction_read_only`` for the session, and a ``REPEATABLE READ READ ONLY``
transaction), before the run's stack starts, and exports its snapshot
(``pg_export_snapshot()``). Every read of the fork happens in that snapshot: the checks,
the catalogs, the checksums (in that session) and the rows (``psql`` readers that import
the snapshot with ``SET TRANSACTION SNAPSHOT``). The tables of one fork are therefore
exactly as they were at one instant, whatever production's writers do meanwhile.

**Selection.** ``where=`` is an SQL condition on the table's columns (``"active"``,
``"created_at > now() - interval '7 days'"``); ``sample=`` keeps the rows whose hash of
their text, with the seed, falls under the fraction (the same rows for the same data and
seed); ``limit=`` keeps the first rows in primary-key order (the row's text order for a
table without one).
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any

from omnilab.services.fork_cache import cache_key
from omnilab.services.forking import Forker, ForkFailed, SeedMissing, connection_error
from omnilab.services.postgres import checksum as postgres_checksum
from omnilab.services.postgres import rows as postgres_copy
from omnilab.services.postgres.tables import (
    Renamer,
    TableShape,
    create_statements,
    index_statements,
    key_statements,
    quote,
    read_shape,
    split_name,
)
from omnilab.services.promotable import Progress, Promotable, PromotionFailed

if TYPE_CHECKING:
    from pathlib import Path

    import psycopg

    from omnilab.services.base import Endpoint
    from omnilab.services.fork_cache import ForkCache

#: Settings that make a row's text the same on every server, for ``sample=``'s hash and
#: the text checksum (as :mod:`.checksum` uses them).
_CANONICAL = (
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET TimeZone = 'UTC'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)
#: ``sample=``'s test: the row hash's top 53 bits against the fraction of 2**53.
_SAMPLE = "((hashtextextended(t::text, {seed}) >> 11) & 9007199254740991) < {bound}"


#: The cache entry's file: the rows in binary COPY format.
ROWS_FILE = "rows.bin"

#: Every production session of a fork is read-only, whatever its transactions say.
READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"


class _NotTeed(Exception):
    """Drops a cache entry opened for rows that were not written into it."""


class PostgresForker(Forker):
    consistency = (
        "snapshot: every table read in one REPEATABLE READ READ ONLY transaction "
        "(exported snapshot shared by the COPY readers)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dsn = self.settings.production_postgres_url
        self._prod: psycopg.Connection | None = None
        self._snapshot = ""
        self._oids: dict[str, int] = {}

    # -- production, read-only, in one snapshot ---------------------------------------------

    def _connect(self) -> psycopg.Connection:
        import psycopg

        try:
            conn = psycopg.connect(self.dsn, connect_timeout=10, options=READ_ONLY_OPTIONS)
        except (psycopg.Error, ValueError) as exc:
            raise connection_error("PostgreSQL", self.dsn, str(exc)) from None
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        return conn

    @property
    def prod(self) -> psycopg.Connection:
        if self._prod is None:
            conn = self._connect()
            try:
                for statement in _CANONICAL:
                    conn.execute(statement)  # the transaction, and its snapshot, begin here
                row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            except BaseException:
                conn.close()
                raise
            assert row is not None
            self._snapshot = str(row[0])
            self._prod = conn
        return self._prod

    def close(self) -> None:
        if self._prod is not None:
            self._prod.close()
            self._prod = None

    def _oid(self, item: Promotable) -> int:
        schema, table = split_name(item.target)
        row = self.prod.execute(
            "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        ).fetchone()
        url = item.production_url(self.settings)
        if row is None:
            raise SeedMissing(
                f"seed {item.label}: production PostgreSQL ({url}) has no table {schema}.{table}"
            )
        if row[1] != "r":
            raise SeedMissing(
                f"seed {item.label}: {schema}.{table} in production is not a plain table"
            )
        return int(row[0])

    # -- what is read -----------------------------------------------------------------------

    def _select(self, item: Promotable, oid: int, columns: str = "t.*") -> str:
        """The query of the rows a fork copies: the whole table, or its selection."""
        schema, table = split_name(item.target)
        query = f"SELECT {columns} FROM {quote(self.prod, schema, table)} t"
        where = getattr(item, "where", None)
        conditions = [f"({where})"] if where else []
        chosen = item.selection
        if chosen.sample is not None:
            bound = int(chosen.sample * 2**53)
            conditions.append(_SAMPLE.format(seed=chosen.seed, bound=bound))
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        if chosen.limit is not None:
            query += f" ORDER BY {self._order(oid)} LIMIT {chosen.limit}"
        return query

    def _order(self, oid: int) -> str:
        keys = self.prod.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary"
            " ORDER BY array_position(i.indkey, a.attnum)",
            (oid,),
        ).fetchall()
        if not keys:
            return "t::text"
        return ", ".join("t." + quote(self.prod, k) for (k,) in keys)

    # -- check ------------------------------------------------------------------------------

    def check(self) -> dict[str, int]:
        import psycopg

        counts = {}
        for item in self.items:
            oid = self._oid(item)
            self._oids[item.label] = oid
            try:
                with self.prod.transaction():  # a savepoint: a bad where= spoils nothing
                    row = self.prod.execute(
                        f"SELECT count(*) FROM ({self._select(item, oid)}) s"
                    ).fetchone()
            except psycopg.Error as exc:
                raise SeedMissing(
                    f"seed {item.label}: production cannot select it: "
                    f"{str(exc).strip().splitlines()[0]}"
                ) from None
            counts[item.label] = int(row[0]) if row else 0
            # The table's size (rows, indexes, TOAST) in the share the selection keeps.
            size = self.prod.execute(
                "SELECT pg_total_relation_size(%s), "
                f"(SELECT count(*) FROM {quote(self.prod, *split_name(item.target))})",
                (oid,),
            ).fetchone()
            if size is not None:
                whole = max(int(size[1]), 1)
                self.sizes[item.label] = int(size[0]) * min(counts[item.label], whole) // whole
        return counts

    # -- copy -------------------------------------------------------------------------------

    def copy(self, item: Promotable, target: Endpoint, progress: Progress) -> dict[str, Any]:
        from omnilab.services.fork_cache import ForkCache

        oid = self._oids.get(item.label) or self._oid(item)
        prod_schema, _ = split_name(item.target)
        shape = read_shape(self.prod, oid, prod_schema)
        cache = ForkCache.from_settings(self.settings)
        began = time.monotonic()
        production: dict[str, Any] | None = None
        key = ""
        if cache is not None:
            # The authority first: production's checksum of the rows selected, in the
            # fork's snapshot; the entry's name includes it (docs/fork.md, the cache).
            production = self._production_checksum(item, oid)
            key = cache_key(self._identity(item, shape, production))
        checking = time.monotonic() - began
        run_dsn = endpoint_dsn(target)
        # A new cache entry is written as the rows stream past (``tee``), and kept only
        # once the copy is verified: ``new_entry`` holds it open until then.
        new_entry = contextlib.ExitStack()
        try:
            provenance = self._copy_verified(
                item, oid, shape, (cache, key), production, run_dsn, progress, new_entry, checking
            )
        except BaseException:
            new_entry.__exit__(*sys.exc_info())
            raise
        return provenance

    def _copy_verified(
        self,
        item: Promotable,
        oid: int,
        shape: TableShape,
        caching: tuple[ForkCache | None, str],
        production: dict[str, Any] | None,
        run_dsn: str,
        progress: Progress,
        new_entry: contextlib.ExitStack,
        checking: float,
    ) -> dict[str, Any]:
        """Create the run's table, fill it (from the cache, or from production's rows),
        verify it against production's checksum; the seed's provenance."""
        import psycopg

        from omnilab.services.promotable import pause_point

        cache, key = caching
        began = time.monotonic()
        prod_schema, prod_table = split_name(item.target)
        schema, table = split_name(item.name)
        served = False
        teed = False
        with psycopg.connect(run_dsn, autocommit=True) as run:
            run.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(run, schema)}")
            run.execute(f"SET search_path = {quote(run, schema)}")
            rename = Renamer(prod_table, table)
            for statement in create_statements(shape, schema, table, rename):
                run.execute(statement)
            new_oid = _table_oid(run, schema, table)
            truncate, copy_in = _load_statements(run, shape, schema, table)
            try:
                if cache is not None:
                    with cache.reading(key) as entry:
                        if entry is not None:
                            postgres_copy.load_from_file(
                                postgres_copy.psql_binary(),
                                run_dsn,
                                truncate,
                                copy_in,
                                entry.path / ROWS_FILE,
                            )
                            assert production is not None
                            progress.advance(int(production["rows"]))
                            served = True
                if not served:
                    tee = self._open_entry(cache, key, item, production, new_entry)
                    teed = self._copy_rows(
                        item, oid, shape, (run, run_dsn), (schema, table), new_oid, progress, tee
                    )
            except PromotionFailed as exc:
                raise ForkFailed(f"seed {item.label}: {exc}") from None
            copied = time.monotonic()
            for statement in index_statements(shape, schema, table, rename):
                run.execute(statement)
            for statement in key_statements(shape, schema, table, rename):
                run.execute(statement)
            self._set_sequences(shape, prod_schema, run, schema, table)
            run.execute(f"ANALYZE {quote(run, schema, table)}")
            if production is None:
                production = self._production_checksum(item, oid)
            method = production["method"]
            theirs = postgres_checksum.checksum(run, new_oid, quote(run, schema, table), method)
            if served and theirs != production and cache is not None:
                # An entry that does not restore to its own checksum (damaged on disk):
                # removed, and the rows copied from production after all.
                cache.remove(key)
                served = False
                try:
                    self._copy_rows(
                        item, oid, shape, (run, run_dsn), (schema, table), new_oid, progress
                    )
                except PromotionFailed as exc:
                    raise ForkFailed(f"seed {item.label}: {exc}") from None
                theirs = postgres_checksum.checksum(run, new_oid, quote(run, schema, table), method)
            # The transaction that loaded the rows (one, ``COPY ... FREEZE`` after the
            # ``TRUNCATE``): rows still carrying it are the fork's copy as verified, which
            # lets a diff at promotion compare only the rows the run wrote since.
            # With it, the server's next transaction id, epoch included: a diff taken
            # after 2**31 more transactions (when ids may wrap round) reads every row.
            loaded = run.execute(
                "SELECT t.xmin::text, txid_snapshot_xmax(txid_current_snapshot())"
                f" FROM {quote(run, schema, table)} t LIMIT 1"
            ).fetchone()
        verified = time.monotonic()
        total = self.prod.execute(
            f"SELECT count(*) FROM {quote(self.prod, prod_schema, prod_table)}"
        )
        whole = total.fetchone()
        if theirs != production:
            raise ForkFailed(
                f"seed {item.label}: the run's copy differs from production's rows "
                f"({theirs['rows']:,} rows copied of {production['rows']:,}; checksums "
                f"{theirs['sum']} and {production['sum']})"
            )
        stored = False
        if cache is not None and not served:
            if teed:
                pause_point("caching:postgres")  # tests: a fork killed while filling
                try:
                    new_entry.close()  # verified: the entry is completed and put in place
                    stored = True
                except OSError as exc:
                    self.reporter.note(f"  seed {item.label}: not cached: {exc}")
            else:
                # Rows not teed (no ``tee``, psycopg's copy, a write error): any entry
                # opened is dropped, and the entry written from the run's table.
                new_entry.__exit__(_NotTeed, _NotTeed(), None)
                stored = self._fill(cache, key, item, run_dsn, (schema, table), shape, production)
        provenance = {
            "production": {
                "table": f"{prod_schema}.{prod_table}",
                "rows": int(whole[0]) if whole else 0,
                "selected": production["rows"],
                "checksum": production,
                "snapshot": self._snapshot,
            },
            "run": {
                "table": f"{schema}.{table}",
                "rows": theirs["rows"],
                "checksum": theirs,
                "xmin": int(loaded[0]) if loaded else None,
                "next_xid": int(loaded[1]) if loaded else None,
            },
            "cache": (
                {"served": served, "stored": stored, "key": key[:16]}
                if cache is not None
                else {"served": False, "stored": False, "off": True}
            ),
            "seconds": {
                "copy": round(copied - began, 4),
                "verify": round(verified - copied + checking, 4),
                "cache": round(time.monotonic() - verified, 4),
            },
        }
        return provenance

    def _identity(
        self, item: Promotable, shape: TableShape, production: dict[str, Any]
    ) -> dict[str, Any]:
        """What names a cache entry: production's server and database (no credentials),
        the table and its selection, the columns copied, and production's checksum."""
        from psycopg.conninfo import conninfo_to_dict

        info = self.prod.info
        params = conninfo_to_dict(self.dsn)
        declared = {k: v for k, v in item.to_dict().items() if k != "name"}
        return {
            "service": "postgres",
            "server": f"{info.host}:{info.port}",
            "database": info.dbname or params.get("dbname"),
            "item": declared,
            "target": item.target,
            "columns": list(shape.copied_columns),
            "checksum": production,
        }

    def _open_entry(
        self,
        cache: ForkCache | None,
        key: str,
        item: Promotable,
        production: dict[str, Any] | None,
        new_entry: contextlib.ExitStack,
    ) -> Path | None:
        """The file a new cache entry's rows are written to as they are copied; None
        without a cache, or where it cannot take one (a full disk fails no run)."""
        if cache is None or production is None:
            return None
        try:
            meta = self._entry_meta(item, production)
            folder = new_entry.enter_context(cache.writing(key, meta))
        except OSError as exc:
            self.reporter.note(f"  seed {item.label}: not cached: {exc}")
            return None
        return folder / ROWS_FILE

    def _entry_meta(self, item: Promotable, production: dict[str, Any]) -> dict[str, Any]:
        return {
            "service": "postgres",
            "kind": item.kind,
            "label": item.label,
            "item": item.to_dict(),
            "url": item.production_url(self.settings),
            "checksum": production,
            "rows": production["rows"],
        }

    def _fill(
        self,
        cache: ForkCache,
        key: str,
        item: Promotable,
        run_dsn: str,
        name: tuple[str, str],
        shape: TableShape,
        production: dict[str, Any],
    ) -> bool:
        """Write the verified copy's rows into the cache (binary ``COPY`` from the run's
        server, whose rows equal production's: the checksums agree), where they could not
        be written as they were copied (no ``tee``, or rows copied through psycopg);
        False when the cache could not take it (a full disk is no reason to fail the
        run)."""
        from psycopg import sql

        from omnilab.services.promotable import pause_point

        schema, table = name
        listed = ", ".join(sql.Identifier(c).as_string(None) for c in shape.copied_columns)
        qualified = sql.Identifier(schema, table).as_string(None)
        copy_out = f"COPY {qualified} ({listed}) TO STDOUT (FORMAT binary)"
        try:
            with cache.writing(key, self._entry_meta(item, production)) as folder:
                postgres_copy.dump_to_file(
                    postgres_copy.psql_binary(), run_dsn, copy_out, folder / ROWS_FILE
                )
                pause_point("caching:postgres")  # tests: a fork killed while filling
        except (OSError, PromotionFailed) as exc:
            self.reporter.note(f"  seed {item.label}: not cached: {exc}")
            return False
        return True

    def production_checksum(
        self, item: Promotable, recorded: dict[str, Any]
    ) -> dict[str, Any] | None:
        """What the seed selects in production now, by the method recorded at fork time."""
        try:
            oid = self._oid(item)
        except SeedMissing:
            return None
        method = recorded.get("method", "hash_columns")
        if method not in postgres_checksum.METHODS:
            method = "hash_columns"
        selected = f"({self._select(item, oid)})"
        return postgres_checksum.checksum(self.prod, oid, selected, method)

    def _production_checksum(self, item: Promotable, oid: int) -> dict[str, Any]:
        """Production's checksum of the rows selected, computed by production in the fork's
        snapshot; by column hashes, or by text where a column type has no hash function."""
        import psycopg

        selected = f"({self._select(item, oid)})"
        try:
            return postgres_checksum.checksum(self.prod, oid, selected, "hash_columns")
        except psycopg.errors.UndefinedFunction:
            return postgres_checksum.checksum(self.prod, oid, selected, "hash_text")

    def _copy_rows(
        self,
        item: Promotable,
        oid: int,
        shape: TableShape,
        run_side: tuple[psycopg.Connection, str],
        name: tuple[str, str],
        relid: int,
        progress: Progress,
        tee: Path | None = None,
    ) -> bool:
        """Copy the selected rows; returns whether they were also written into ``tee``."""
        from psycopg import sql

        run, run_dsn = run_side
        schema, table = name
        listed_t = ", ".join(
            f"t.{sql.Identifier(c).as_string(self.prod)}" for c in shape.copied_columns
        )
        copy_out = f"COPY ({self._select(item, oid, listed_t)}) TO STDOUT (FORMAT binary)"
        truncate, copy_in = _load_statements(run, shape, schema, table)
        psql = postgres_copy.psql_binary()
        if psql is None:
            # The fork's own session is in the snapshot: it reads the rows itself.
            postgres_copy.copy_with_psycopg(
                self.prod,
                sql.Composed([sql.SQL(copy_out)]),
                run,
                sql.Composed([sql.SQL(truncate)]),
                sql.Composed([sql.SQL(copy_in)]),
                progress,
            )
            return False
        reader = [
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            f"SET TRANSACTION SNAPSHOT '{self._snapshot}'",
            *_CANONICAL,
            copy_out,
            "COMMIT",
        ]
        return postgres_copy.copy_with_psql(
            psql, self._reader_dsn(), reader, run_dsn, truncate, copy_in, progress, run, relid, tee
        )

    def _reader_dsn(self) -> str:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        return make_conninfo(**{**conninfo_to_dict(self.dsn), "options": READ_ONLY_OPTIONS})  # type: ignore[arg-type]

    def _set_sequences(
        self, shape: TableShape, prod_schema: str, run: psycopg.Connection, schema: str, table: str
    ) -> None:
        """Sequences continue where production's are, so new rows in the run get new ids."""
        for column in shape.columns:
            seq = column.get("sequence")
            if not seq:
                continue
            row = self.prod.execute(
                "SELECT last_value, is_called FROM " + quote(self.prod, prod_schema, seq)
            ).fetchone()
            if row is None:
                continue
            run.execute(
                "SELECT setval(pg_get_serial_sequence(%s, %s), %s, %s)",
                (quote(run, schema, table), column["name"], row[0], row[1]),
            )


def _load_statements(
    run: psycopg.Connection, shape: TableShape, schema: str, table: str
) -> tuple[str, str]:
    """The run's side of a load: empty the table, then ``COPY`` its rows in (``FREEZE``:
    the two in one transaction)."""
    from psycopg import sql

    listed = ", ".join(sql.Identifier(c).as_string(run) for c in shape.copied_columns)
    truncate = f"TRUNCATE {quote(run, schema, table)}"
    copy_in = f"COPY {quote(run, schema, table)} ({listed}) FROM STDIN (FORMAT binary, FREEZE)"
    return truncate, copy_in


def endpoint_dsn(endpoint: Endpoint) -> str:
    """The run's database, as promotion reaches it (the stack's credentials)."""
    from psycopg.conninfo import make_conninfo

    creds = endpoint.credentials
    return make_conninfo(
        host=endpoint.host,
        port=endpoint.port,
        user=creds.username or "omnimind",
        password=creds.password or "",
        dbname=creds.database or "omnimind_exp",
    )


def _table_oid(conn: psycopg.Connection, schema: str, table: str) -> int:
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()
    assert row is not None
    return int(row[0])
