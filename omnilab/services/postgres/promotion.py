"""Promoting PostgreSQL tables: ``PostgresTable("scores")`` copies schema and rows.

- Stage: the table is created in a schema of its own in production
  (``omnilab_staging_<promotion>``), with the source's columns, defaults, identity and
  serial sequences, generated columns, check constraints, storage options and comments;
  the rows stream from the run's database with ``COPY ... (FORMAT binary)`` into it
  (``FREEZE``: see :mod:`postgres_copy`), then ``ANALYZE`` and the primary key, unique
  and exclusion constraints and indexes are built (faster on a full table than row by
  row), sequences are set where the run left them, and the privileges and owner of the
  table it replaces are given to it. Foreign keys are not copied (the tables they point
  at are not part of the promotion); the plan says so.
- Verify: row count and an order-independent checksum (:mod:`postgres_checksum`)
  computed by each server over its own table, the source's while the copy runs,
  production's beside ``ANALYZE`` and the index builds.
- Switch: one transaction moves the production table to ``omnilab_replaced_<promotion>``
  (kept for rollback) and the staged table into its place (``ALTER TABLE ... SET
  SCHEMA``: indexes, constraints and owned sequences move with it). Readers see the old
  table or the new one; a reader holding a lock makes the switch wait at most
  ``OMNILAB_PROMOTE_LOCK_TIMEOUT`` seconds, then the promotion fails and nothing changed.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.errors import UsageError
from omnilab.redact import connection_cause, encoding_hint, redact_text, redact_url
from omnilab.services.postgres import checksum as postgres_checksum
from omnilab.services.postgres import rows as postgres_copy
from omnilab.services.postgres.fork import PostgresForker, endpoint_dsn
from omnilab.services.postgres.tables import (
    Renamer,
    TableShape,
    create_statements,
    index_statements,
    key_statements,
    quote,
    read_shape,
    regclass_sql,
    split_name,
)
from omnilab.services.promotable import (
    DIFF_EXAMPLES,
    ItemDiff,
    ItemPlan,
    ItemRecord,
    OnConflict,
    Progress,
    Promotable,
    Promoter,
    PromotionFailed,
    PromotionRefused,
    SinceFork,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from omnilab.config import Settings
    from omnilab.services.forking import Forker

STAGING_SCHEMA = "omnilab_staging_{tag}"
REPLACED_SCHEMA = "omnilab_replaced_{tag}"


def _version(number: int) -> str:
    """``150010`` -> ``15.10`` (``server_version_num`` since PostgreSQL 10)."""
    return f"{number // 10000}.{number % 10000}"


class PostgresPromoter(Promoter):
    item: PostgresTable

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dsn = self.settings.production_postgres_url
        self._prod = self._connect(self.dsn)
        self._src: psycopg.Connection | None = None
        self._shape: TableShape | None = None
        self._method = "hash_columns"
        self._source_checksum: dict[str, Any] | None = None

    # -- connections ------------------------------------------------------------------------

    @staticmethod
    def _connect(dsn: str) -> psycopg.Connection:
        import psycopg

        try:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            reason = connection_cause(str(exc), type(exc).__name__)
            raise PromotionFailed(
                f"cannot reach production PostgreSQL at {redact_url(dsn)}: "
                f"{redact_text(reason, dsn)}{encoding_hint(dsn)}"
            ) from None
        except (psycopg.ProgrammingError, ValueError) as exc:
            # libpq's parser quotes what it could not read: maybe the password.
            raise PromotionFailed(
                f"production PostgreSQL's URL {redact_url(dsn)} cannot be used: "
                f"{redact_text(str(exc).strip(), dsn)}{encoding_hint(dsn)}"
            ) from None

    @property
    def prod(self) -> psycopg.Connection:
        """Production, reconnected if the server ended the session (cleanup must work
        after a failure that broke the connection)."""
        if self._prod.closed or self._prod.broken:
            self._prod.close()
            self._prod = self._connect(self.dsn)
        return self._prod

    @property
    def source_dsn(self) -> str:
        return endpoint_dsn(self.need_source())

    @property
    def src(self) -> psycopg.Connection:
        if self._src is None:
            self._src = self._connect(self.source_dsn)
        return self._src

    def close(self) -> None:
        self._prod.close()
        if self._src is not None:
            self._src.close()

    # -- names ------------------------------------------------------------------------------

    @property
    def staging_schema(self) -> str:
        return STAGING_SCHEMA.format(tag=self.tag)

    @property
    def replaced_schema(self) -> str:
        return REPLACED_SCHEMA.format(tag=self.tag)

    @staticmethod
    def _ident(*parts: str) -> sql.Identifier:
        from psycopg import sql

        return sql.Identifier(*parts)

    def _target(self, record: ItemRecord) -> tuple[str, str]:
        return split_name(record.plan.target)

    # -- inspecting -------------------------------------------------------------------------

    @staticmethod
    def _oid(conn: psycopg.Connection, schema: str, table: str) -> int | None:
        row = conn.execute(
            "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        ).fetchone()
        if row is None:
            return None
        if row[1] != "r":
            kinds = {"p": "a partitioned table", "v": "a view", "m": "a materialized view"}
            raise PromotionFailed(
                f"{schema}.{table} is {kinds.get(row[1], 'not a plain table')}; "
                "only plain tables can be promoted"
            )
        return int(row[0])

    @staticmethod
    def _count(conn: psycopg.Connection, oid: int) -> tuple[int, int]:
        """Exact row count and total size (table, indexes, TOAST)."""
        count = conn.execute(f"SELECT count(*) FROM {regclass_sql(conn, oid)}").fetchone()
        size = conn.execute("SELECT pg_total_relation_size(%s)", (oid,)).fetchone()
        return int(count[0]) if count else 0, int(size[0]) if size else 0

    @staticmethod
    def _checksum(conn: psycopg.Connection, oid: int, method: str) -> dict[str, Any]:
        """Row count and the sum of every row's 64-bit hash, computed by the server."""
        return postgres_checksum.checksum(conn, oid, regclass_sql(conn, oid), method)

    def source_checksum(self, conn: psycopg.Connection | None = None) -> dict[str, Any]:
        """The source table's checksum, choosing the method the column types allow."""
        import psycopg

        if self._source_checksum is None:
            shape = self.shape()
            conn = conn or self.src
            try:
                self._source_checksum = self._checksum(conn, shape.oid, self._method)
            except psycopg.errors.UndefinedFunction:
                self._method = "hash_text"  # a column type without a hash function
                self._source_checksum = self._checksum(conn, shape.oid, self._method)
        return self._source_checksum

    def shape(self) -> TableShape:
        if self._shape is None:
            schema, table = split_name(self.item.name)
            oid = self._oid(self.src, schema, table)
            if oid is None:
                raise PromotionFailed(
                    f"{self.item.label}: the run's database has no table {schema}.{table}"
                )
            self._shape = read_shape(self.src, oid, schema)
        return self._shape

    # -- plan ---------------------------------------------------------------------------------

    def plan(self, on_conflict: OnConflict) -> ItemPlan:
        plan = self._plan_action(on_conflict)
        if plan.action in ("create", "replace", "version"):
            self._plan_compatibility(plan)
        return plan

    def _column_types(self) -> list[tuple[int, str, str, str, bool, str | None]]:
        """The types of the table's columns (an array's element type for an array): oid,
        name as the table's definition writes it, name qualified by its schema, kind
        (``pg_type.typtype``: e enum, d domain, b base...), built in (``pg_catalog``),
        and the extension that owns it, if any."""
        rows = self.src.execute(
            "SELECT DISTINCT b.oid::int, format_type(b.oid, NULL), "
            "quote_ident(n.nspname) || '.' || quote_ident(b.typname), b.typtype::text, "
            "n.nspname = 'pg_catalog', x.extname::text "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "JOIN pg_type b ON b.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 "
            "THEN t.typelem ELSE t.oid END "
            "JOIN pg_namespace n ON n.oid = b.typnamespace "
            "LEFT JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = b.oid "
            "AND d.deptype = 'e' "
            "LEFT JOIN pg_extension x ON x.oid = d.refobjid "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 2",
            (self.shape().oid,),
        ).fetchall()
        return [tuple(row) for row in rows]

    def _type_fix(self, oid: int, qualified: str, kind: str, extension: str | None) -> str:
        """How production gets a type the run created: the run's own definition of an
        enum or a domain, the extension that brings an extension's type."""
        if extension:
            return f"CREATE EXTENSION {extension}"
        if kind == "e":
            row = self.src.execute(
                "SELECT string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder) "
                "FROM pg_enum WHERE enumtypid = %s",
                (oid,),
            ).fetchone()
            return f"CREATE TYPE {qualified} AS ENUM ({row[0] if row else ''})"
        if kind == "d":
            row = self.src.execute(
                "SELECT format_type(t.typbasetype, t.typtypmod), "
                "(SELECT string_agg(' ' || pg_get_constraintdef(c.oid), '' ORDER BY c.conname) "
                "FROM pg_constraint c WHERE c.contypid = t.oid) FROM pg_type t WHERE t.oid = %s",
                (oid,),
            ).fetchone()
            base, checks = (row[0], row[1] or "") if row else ("?", "")
            return f"CREATE DOMAIN {qualified} AS {base}{checks}"
        return f"create {qualified} as the run's database defines it"

    def _plan_compatibility(self, plan: ItemPlan) -> None:
        """Refuse, before any copy, a table with a column of a type production's
        PostgreSQL does not have (``to_regtype`` there): one the run created (an enum, a
        domain) or an extension brought, whatever the versions, with the statement that
        creates it; a built-in type of a newer major version. Servers of two major
        versions are named in a note."""
        ours, theirs = self.src.info.server_version, self.prod.info.server_version
        plan.details["servers"] = {
            "run": f"PostgreSQL {_version(ours)}",
            "production": f"PostgreSQL {_version(theirs)}",
        }
        same_major = ours // 10000 == theirs // 10000
        columns = self._column_types()

        def absent(name: str) -> bool:
            return self.prod.execute("SELECT to_regtype(%s)", (name,)).fetchone() == (None,)

        own = [
            (name, self._type_fix(oid, qualified, kind, extension))
            for oid, name, qualified, kind, builtin, extension in columns
            if not builtin and absent(qualified)
        ]
        if own:
            plan.action = "incompatible"
            names = ", ".join(name for name, _ in own)
            plan.reason = (
                f"production's database has no type {names}, which the run's table uses; "
                f"fix: create it in production first ({'; '.join(fix for _, fix in own)}), "
                "then promote again"
            )
            return
        if same_major:
            return
        missing = [name for _, name, _, _, builtin, _ in columns if builtin and absent(name)]
        if missing:
            plan.action = "incompatible"
            plan.reason = (
                f"production's PostgreSQL {_version(theirs)} has no type "
                f"{', '.join(missing)}, which the run's table uses (the run's PostgreSQL "
                f"{_version(ours)}); fix: use types production has, or upgrade production "
                f"to PostgreSQL {ours // 10000}"
            )
            return
        plan.notes.append(
            f"the run's PostgreSQL {_version(ours)} and production's {_version(theirs)} "
            "differ in major version: the table is rebuilt from its definition and its "
            "rows copied in COPY's binary format, which both read for its types; a default "
            "or check that uses a function production lacks fails the staging, which "
            "changes nothing"
        )

    def _plan_action(self, on_conflict: OnConflict) -> ItemPlan:
        item = self.item
        shape = self.shape()
        rows, size = self._count(self.src, shape.oid)
        plan = self.new_plan(
            rows,
            size_bytes=size,
            details={
                "columns": len(shape.columns),
                "constraints": len(shape.keys) + len(shape.checks),
                "indexes": len(shape.indexes),
            },
        )
        if shape.foreign_keys:
            plan.notes.append(
                "foreign keys are not copied (the tables they reference are not promoted): "
                + ", ".join(shape.foreign_keys)
            )
        schema, table = split_name(item.target)
        oid = self._oid(self.prod, schema, table)
        if oid is None:
            plan.reason = f"production has no table {item.target}"
            return plan
        plan.target_count = self._count(self.prod, oid)[0]
        if self._same(oid, rows):
            plan.action, plan.reason = "nothing", "production already holds this table"
            return plan
        if on_conflict == "fail":
            plan.action = "conflict"
            plan.reason = (
                f"production already has a different table {item.target} "
                f"({plan.target_count:,} rows); use --on-conflict replace or version"
            )
            return plan
        if on_conflict == "replace":
            blockers = self._dependents(oid)
            if blockers:
                plan.action = "conflict"
                plan.reason = (
                    f"cannot replace {item.target}: {'; '.join(blockers)} would keep "
                    "using the old table; use --on-conflict version"
                )
                return plan
            plan.action = "replace"
            plan.reason = (
                f"replaces production's {item.target} ({plan.target_count:,} rows), kept as "
                f"{self.replaced_schema}.{table} for rollback"
            )
            plan.notes += self._lost_on_replace(oid)
            return plan
        return self._plan_version(plan, schema, table, rows)

    def _plan_version(self, plan: ItemPlan, schema: str, table: str, rows: int) -> ItemPlan:
        for n in range(2, 10_000):
            candidate = f"{table}_v{n}"
            oid = self._oid(self.prod, schema, candidate)
            plan.target = f"{schema}.{candidate}"
            if oid is None:
                plan.action = "version"
                plan.reason = f"production's {self.item.target} is left as it is"
                return plan
            if self._same(oid, rows):
                plan.action = "nothing"
                plan.reason = f"production already holds this table as {plan.target}"
                return plan
        raise PromotionFailed(f"{self.item.label}: no free version name")

    def _same(self, oid: int, rows: int) -> bool:
        import psycopg

        target_shape = read_shape(self.prod, oid, None)
        if target_shape.signature != self.shape().signature:
            return False
        if self._count(self.prod, oid)[0] != rows:
            return False
        source = self.source_checksum()
        try:
            return self._checksum(self.prod, oid, source["method"]) == source
        except psycopg.Error:
            return False

    # -- diff -------------------------------------------------------------------------------

    def diff(self, examples: int = DIFF_EXAMPLES, since: SinceFork | None = None) -> ItemDiff:
        """Rows added, changed and removed against production's table, by primary key
        (:mod:`.diff`); production is read in a read-only session of its own. A table
        forked whole, from a production unchanged since, is compared by what the run
        wrote since the fork (``since``: :func:`.diff.fork_base`)."""
        import psycopg

        from omnilab.services.postgres import diff as postgres_diff
        from omnilab.services.postgres.fork import READ_ONLY_OPTIONS

        shape = self.shape()
        schema, table = split_name(self.item.name)
        run = postgres_diff.Side(self.src, schema, table, shape.oid, self.source_dsn)
        with psycopg.connect(self.dsn, connect_timeout=10, options=READ_ONLY_OPTIONS) as prod:
            prod.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            prod.read_only = True
            prod.execute("SELECT 1")  # one transaction, one snapshot, for every read
            target_schema, target_table = split_name(self.item.target)
            oid = self._oid(prod, target_schema, target_table)
            production = (
                None
                if oid is None
                else postgres_diff.Side(prod, target_schema, target_table, oid, self.dsn)
            )
            base = postgres_diff.fork_base(since, f"{schema}.{table}")
            return postgres_diff.diff_tables(run, production, self.item.unit, examples, base)

    def _dependents(self, oid: int) -> list[str]:
        """Objects that reference the production table by identity: a swap leaves them
        pointing at the old table, so a replace is refused."""
        rows = self.prod.execute(
            """
            SELECT DISTINCT 'view ' || v.oid::regclass::text
            FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
            JOIN pg_class v ON v.oid = r.ev_class
            WHERE d.refobjid = %(oid)s AND d.classid = 'pg_rewrite'::regclass AND v.oid <> %(oid)s
            UNION
            SELECT 'foreign key ' || conname || ' of ' || conrelid::regclass::text
            FROM pg_constraint WHERE confrelid = %(oid)s AND contype = 'f' AND conrelid <> %(oid)s
            """,
            {"oid": oid},
        ).fetchall()
        return sorted(r[0] for r in rows)

    def _lost_on_replace(self, oid: int) -> list[str]:
        row = self.prod.execute(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal),"
            " (SELECT count(*) FROM pg_policy WHERE polrelid = %(oid)s)",
            {"oid": oid},
        ).fetchone()
        notes = []
        if row and row[0]:
            notes.append(f"production's table has {row[0]} triggers; the promoted one will not")
        if row and row[1]:
            notes.append(f"production's table has {row[1]} row security policies; not copied")
        return notes

    # -- stage --------------------------------------------------------------------------------

    def stage(self, record: ItemRecord, progress: Progress) -> None:
        from psycopg import sql

        shape = self.shape()
        schema, table = self._target(record)
        staging = self.staging_schema
        record.staging = {"schema": staging}
        rename = Renamer(split_name(self.item.name)[1], table)
        self.prod.execute(sql.SQL("CREATE SCHEMA {}").format(self._ident(staging)))
        self.prod.execute(f"SET search_path = {quote(self.prod, schema)}")
        for statement in create_statements(shape, staging, table, rename):
            self.prod.execute(statement)
        new_oid = self._oid(self.prod, staging, table)
        assert new_oid is not None
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The run's server computes its checksum while it streams the rows.
            source_future = pool.submit(self._source_checksum_own_connection)
            self._copy_rows(shape, staging, table, progress, new_oid)
            source = source_future.result()
        copied = time.monotonic()
        target = self._verify_index_analyze(shape, schema, staging, table, rename, new_oid)
        indexed = time.monotonic()
        for statement in key_statements(shape, staging, table, rename):
            self.prod.execute(statement)
        self._set_sequences(shape, staging, table, rename)
        record.switch["grants"] = self._copy_privileges(record, staging, table)
        record.seconds.update(
            copy=round(copied - began, 4),
            indexes_checksum_analyze=round(indexed - copied, 4),
            constraints=round(time.monotonic() - indexed, 4),
        )
        record.counts = {"source": source["rows"], "target": target["rows"]}
        record.checksums = {"source": source, "target": target}
        record.staging["oid"] = new_oid
        if source != target:
            raise PromotionRefused(
                f"{self.item.label}: the staged table differs from the run's "
                f"({target['rows']:,} rows staged of {source['rows']:,}; checksums "
                f"{target['sum']} and {source['sum']})"
            )

    def _verify_index_analyze(
        self,
        shape: TableShape,
        schema: str,
        staging: str,
        table: str,
        rename: Renamer,
        oid: int,
    ) -> dict[str, Any]:
        """Production's checksum, ``ANALYZE`` (readers' plans need statistics from the
        first query on) and the index builds, each in a session of its own.

        ``ANALYZE`` and ``CREATE INDEX`` exclude each other, and the checksum excludes
        neither: ``ANALYZE`` runs first beside the checksum, then the builds, two at a
        time as before (each with the parallel workers the server allows), beside what
        is left of the checksum. Were the builds started with ``ANALYZE``, whichever
        took the lock first would make the others wait. Statistics on index expressions
        need their indexes: a table with some is analyzed after the builds instead.
        """
        from psycopg import sql

        analyze = sql.SQL("ANALYZE {}").format(self._ident(staging, table)).as_string(None)
        builds = index_statements(shape, staging, table, rename)
        with ThreadPoolExecutor(max_workers=3) as pool:
            checksum = pool.submit(self._target_checksum_own_connection, oid)
            if not shape.expression_indexes:
                self._run_own_connection(schema, [analyze])
            lanes = [
                pool.submit(self._run_own_connection, schema, builds[i::2])
                for i in range(min(2, len(builds)))
            ]
            for lane in lanes:
                lane.result()
            target = checksum.result()
        if shape.expression_indexes:
            self._run_own_connection(schema, [analyze])
        return target

    def _checksum_session(self, dsn: str) -> psycopg.Connection:
        """A session for a checksum, without parallel workers: a checksum runs beside
        longer work (the copy; ``ANALYZE`` and the index builds), so workers would not
        make the promotion shorter, only add processes and CPU where the cores are busy
        with that work. A session setting; the server's own are left as they are."""
        conn = self._connect(dsn)
        try:
            conn.execute("SET max_parallel_workers_per_gather = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    def _source_checksum_own_connection(self) -> dict[str, Any]:
        with self._checksum_session(self.source_dsn) as conn:
            return self.source_checksum(conn)

    def _run_own_connection(self, schema: str, statements: list[str]) -> None:
        with self._connect(self.dsn) as conn:
            conn.execute(f"SET search_path = {quote(conn, schema)}")
            for statement in statements:
                conn.execute(statement)

    def _target_checksum_own_connection(self, oid: int) -> dict[str, Any]:
        with self._checksum_session(self.dsn) as conn:
            return self._checksum(conn, oid, self._method_after_source())

    def _method_after_source(self) -> str:
        # The source's checksum picked the method (it may have fallen back to text).
        method: str = self.source_checksum()["method"]
        return method

    def _copy_rows(
        self, shape: TableShape, staging: str, table: str, progress: Progress, relid: int
    ) -> None:
        from psycopg import sql

        columns = sql.SQL(", ").join(self._ident(c) for c in shape.copied_columns)
        copy_out = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)").format(
            columns, self._ident(*split_name(self.item.name))
        )
        # Emptied in the loading transaction, the new table can be loaded FREEZE.
        truncate = sql.SQL("TRUNCATE {}").format(self._ident(staging, table))
        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary, FREEZE)").format(
            self._ident(staging, table), columns
        )
        psql = postgres_copy.psql_binary()
        if psql is None:
            postgres_copy.copy_with_psycopg(
                self.src, copy_out, self.prod, truncate, copy_in, progress
            )
            return
        postgres_copy.copy_with_psql(
            psql,
            self.source_dsn,
            copy_out.as_string(self.src),
            self.dsn,
            truncate.as_string(self.prod),
            copy_in.as_string(self.prod),
            progress,
            self.prod,
            relid,
        )

    def _set_sequences(self, shape: TableShape, staging: str, table: str, rename: Renamer) -> None:
        """Sequences continue where the run's stopped, so new rows get new ids."""
        for column in shape.columns:
            seq = column.get("sequence")
            if not seq:
                continue
            row = self.src.execute(
                "SELECT last_value, is_called FROM "
                + quote(self.src, split_name(self.item.name)[0], seq)
            ).fetchone()
            assert row is not None
            self.prod.execute(
                "SELECT setval(pg_get_serial_sequence(%s, %s), %s, %s)",
                (f"{quote(self.prod, staging, table)}", column["name"], row[0], row[1]),
            )

    def _copy_privileges(self, record: ItemRecord, staging: str, table: str) -> list[str]:
        """The table it replaces keeps its readers: same grants, same owner when allowed."""
        import psycopg

        if record.plan.action != "replace":
            return []
        schema, name = self._target(record)
        old = self._oid(self.prod, schema, name)
        if old is None:
            return []
        staged = quote(self.prod, staging, table)
        rows = self.prod.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,"
            " a.privilege_type, a.is_grantable"
            " FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee"
            " WHERE c.oid = %s AND a.grantee <> c.relowner",
            (old,),
        ).fetchall()
        done = []
        for grantee, privilege, grantable in rows:
            option = " WITH GRANT OPTION" if grantable else ""
            self.prod.execute(f"GRANT {privilege} ON {staged} TO {grantee}{option}")
            done.append(f"{privilege} to {grantee}")
        owner = self.prod.execute(
            "SELECT quote_ident(pg_get_userbyid(relowner)), pg_get_userbyid(relowner) = "
            "current_user FROM pg_class WHERE oid = %s",
            (old,),
        ).fetchone()
        if owner and not owner[1]:
            try:
                self.prod.execute(f"ALTER TABLE {staged} OWNER TO {owner[0]}")
                done.append(f"owner {owner[0]}")
            except psycopg.errors.InsufficientPrivilege:
                record.plan.notes.append(
                    f"the promoted table is owned by the promoting role, not {owner[0]} "
                    "(not allowed to give it away)"
                )
        return done

    # -- switch -------------------------------------------------------------------------------

    def switch(self, record: ItemRecord) -> None:
        from psycopg import sql

        schema, table = self._target(record)
        staging = self.staging_schema
        replacing = record.plan.action == "replace"
        with self.prod.transaction():
            self._lock_timeout()
            if replacing:
                replaced = self.replaced_schema
                self.prod.execute(sql.SQL("CREATE SCHEMA {}").format(self._ident(replaced)))
                self.prod.execute(
                    sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                        self._ident(schema, table), self._ident(replaced)
                    )
                )
            self.prod.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    self._ident(staging, table), self._ident(schema)
                )
            )
            self.prod.execute(sql.SQL("DROP SCHEMA {}").format(self._ident(staging)))
        record.switch.update(
            table_oid=record.staging.get("oid"),
            replaced=f"{self.replaced_schema}.{table}" if replacing else None,
        )

    def intended_switch(self, record: ItemRecord) -> dict[str, Any]:
        table = self._target(record)[1]
        replacing = record.plan.action == "replace"
        return {
            "table_oid": record.staging.get("oid"),
            "replaced": f"{self.replaced_schema}.{table}" if replacing else None,
        }

    def _lock_timeout(self) -> None:
        ms = int(self.settings.promote_lock_timeout * 1000)
        self.prod.execute(f"SET LOCAL lock_timeout = {ms}")

    def unswitch(self, record: ItemRecord) -> None:
        from psycopg import sql

        schema, table = self._target(record)
        with self.prod.transaction():
            self._lock_timeout()
            current = self._oid(self.prod, schema, table)
            if current is not None and current != record.switch.get("table_oid"):
                raise PromotionFailed(
                    f"{record.plan.target} is no longer the table this promotion put there"
                )
            if current is not None:
                self.prod.execute(sql.SQL("DROP TABLE {}").format(self._ident(schema, table)))
            if record.switch.get("replaced"):
                replaced = self.replaced_schema
                self.prod.execute(
                    sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                        self._ident(replaced, table), self._ident(schema)
                    )
                )
                self.prod.execute(sql.SQL("DROP SCHEMA {}").format(self._ident(replaced)))

    def is_switched(self, record: ItemRecord) -> bool:
        row = self.prod.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.staging_schema,)
        ).fetchone()
        return row is None

    def target_checksum(self, record: ItemRecord) -> dict[str, Any] | None:
        import psycopg

        schema, table = self._target(record)
        oid = self._oid(self.prod, schema, table)
        if oid is None:
            return None
        method = (record.checksums.get("target") or {}).get("method", "hash_record")
        if method not in postgres_checksum.METHODS:
            raise PromotionFailed(f"{record.plan.target}: unknown checksum method {method!r}")
        try:
            return self._checksum(self.prod, oid, method)
        except psycopg.Error as exc:
            raise PromotionFailed(f"{record.plan.target}: cannot checksum it: {exc}") from None

    def reserve(self, record: ItemRecord) -> None:
        record.staging = {"schema": self.staging_schema}

    def discard_staging(self, record: ItemRecord) -> list[str]:
        from psycopg import sql

        staging = self.staging_schema
        found = self.prod.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (staging,))
        if found.fetchone() is None:
            return []
        self.prod.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(self._ident(staging)))
        return [f"postgres schema {staging}"]

    def drop_replaced(self, record: ItemRecord) -> None:
        from psycopg import sql

        self.prod.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(self._ident(self.replaced_schema))
        )


class PostgresTable(Promotable):
    """A table: its schema (columns, defaults, constraints, indexes) and its rows.

    ``PostgresTable("scores")`` is ``public.scores`` on both sides; ``target=`` renames
    it (``PostgresTable("scores", target="analytics.scores")``).
    """

    service: ClassVar[str] = "postgres"
    kind: ClassVar[str] = "postgres_table"
    promoter_class: ClassVar[type[Promoter]] = PostgresPromoter
    forker_class: ClassVar[type[Forker] | None] = PostgresForker
    unit: ClassVar[str] = "rows"
    noun: ClassVar[str] = "postgres table"

    def __init__(
        self,
        name: str,
        *,
        target: str | None = None,
        where: str | None = None,
        limit: int | None = None,
        sample: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(name, target=target, limit=limit, sample=sample, seed=seed)
        if where is not None and (not isinstance(where, str) or not where.strip()):
            raise UsageError(f"PostgresTable({name!r}): where= must be an SQL condition")
        #: An SQL condition on the table's columns choosing the rows a fork copies.
        self.where = where
        for value in (self.name, self.target):
            schema, table = split_name(value)
            if not table or schema.startswith("omnilab_") or schema == "omnilab":
                raise UsageError(f"PostgresTable({value!r}): not a usable table name")
        # "scores" and "public.scores" are the same table.
        if "." not in self.target:
            self.target = f"{split_name(self.name)[0]}.{self.target}"

    @property
    def qualified_name(self) -> str:
        return ".".join(split_name(self.name))

    @property
    def label(self) -> str:
        arrow = f" -> {self.target}" if self.target != self.qualified_name else ""
        return f"{self.noun} {self.name}{arrow}"

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"name": self.name}
        if self.target != self.qualified_name:
            options["target"] = self.target
        if self.where is not None:
            options["where"] = self.where
        return options

    @property
    def selects(self) -> bool:
        return self.where is not None or self.selection.partial

    def production_url(self, settings: Settings) -> str:
        return redact_url(settings.production_postgres_url)
