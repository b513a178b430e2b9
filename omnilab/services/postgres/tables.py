"""A PostgreSQL table's shape, read from its catalogs, and the DDL that rebuilds it.

Used by promotion to create, in production, a table like the run's: columns, defaults,
identity and serial sequences, generated columns, constraints, indexes, options and
comments. Definitions come from the server's own deparsers (``format_type``,
``pg_get_expr``, ``pg_get_constraintdef``, ``pg_get_indexdef``), not from parsing SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
    import psycopg


@dataclass
class TableShape:
    """What is needed to rebuild a table elsewhere, read from the source's catalogs."""

    oid: int
    columns: list[dict[str, Any]]
    checks: list[tuple[str, str]] = field(default_factory=list)
    #: (constraint name, definition, index definition or None) for p, u, x
    keys: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: (index name, definition) of indexes that back no constraint
    indexes: list[tuple[str, str]] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)
    reloptions: list[str] = field(default_factory=list)
    comment: str | None = None
    #: ANALYZE gathers statistics on index expressions only for indexes that exist.
    expression_indexes: bool = False

    @property
    def signature(self) -> list[tuple[str, str]]:
        return [(c["name"], c["type"]) for c in self.columns]

    @property
    def copied_columns(self) -> list[str]:
        return [c["name"] for c in self.columns if not c["generated"]]


def quote(conn: psycopg.Connection, *parts: str) -> str:
    return sql.Identifier(*parts).as_string(conn)


def split_name(name: str) -> tuple[str, str]:
    """``"scores"`` -> ("public", "scores"); ``"stats.scores"`` -> ("stats", "scores")."""
    schema, _, table = name.rpartition(".")
    return schema or "public", table


def regclass_sql(conn: psycopg.Connection, oid: int) -> str:
    row = conn.execute(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s",
        (oid,),
    ).fetchone()
    assert row is not None
    return str(row[0])


class Renamer:
    """Names of indexes, constraints and sequences follow the table's new name."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def __call__(self, name: str) -> str:
        if self.old == self.new:
            return name
        if name.startswith(self.old):
            return (self.new + name[len(self.old) :])[:63]
        return f"{self.new}_{name}"[:63]


def read_shape(conn: psycopg.Connection, oid: int, schema: str | None) -> TableShape:
    """A table's columns, constraints, indexes and options from the catalogs.

    With the table's own schema first on the search path, the server writes names from
    that schema unqualified (types, functions, sequences), so the definitions apply to
    the same names in production's schema.
    """
    if schema is not None:
        conn.execute(f"SET search_path = {quote(conn, schema)}")
    columns = [
        {
            "name": name,
            "type": typ,
            "not_null": not_null,
            "default": default,
            "identity": identity,
            "generated": generated == "s",
            "collation": collation,
            "sequence": sequence,
            "comment": comment,
        }
        for name, typ, not_null, default, identity, generated, collation, sequence, comment in (
            conn.execute(
                """
                SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                       CASE WHEN a.attcollation <> t.typcollation
                            THEN quote_ident(co.collname) END,
                       (SELECT s.relname FROM pg_depend dep
                          JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
                         WHERE dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum
                           AND dep.classid = 'pg_class'::regclass
                           AND dep.deptype IN ('a', 'i') LIMIT 1),
                       col_description(a.attrelid, a.attnum)
                FROM pg_attribute a
                JOIN pg_type t ON t.oid = a.atttypid
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                LEFT JOIN pg_collation co ON co.oid = a.attcollation
                WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum
                """,
                (oid,),
            ).fetchall()
        )
    ]
    shape = TableShape(oid=oid, columns=columns)
    for name, kind, definition, index_def in conn.execute(
        """
        SELECT c.conname, c.contype, pg_get_constraintdef(c.oid),
               CASE WHEN c.conindid <> 0 THEN pg_get_indexdef(c.conindid) END
        FROM pg_constraint c WHERE c.conrelid = %s ORDER BY c.contype, c.conname
        """,
        (oid,),
    ).fetchall():
        if kind == "c":
            shape.checks.append((name, definition))
        elif kind in ("p", "u", "x"):
            shape.keys.append((name, definition, index_def))
        elif kind == "f":
            shape.foreign_keys.append(name)
    shape.indexes = [
        (name, definition)
        for name, definition in conn.execute(
            """
            SELECT i.relname, pg_get_indexdef(x.indexrelid)
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indrelid = %s
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
            ORDER BY i.relname
            """,
            (oid,),
        ).fetchall()
    ]
    row = conn.execute(
        "SELECT reloptions, obj_description(oid, 'pg_class'), EXISTS (SELECT 1 FROM pg_index"
        " WHERE indrelid = c.oid AND indexprs IS NOT NULL) FROM pg_class c WHERE oid = %s",
        (oid,),
    ).fetchone()
    if row:
        shape.reloptions = list(row[0] or [])
        shape.comment = row[1]
        shape.expression_indexes = bool(row[2])
    return shape


def create_statements(shape: TableShape, staging: str, table: str, rename: Renamer) -> list[str]:
    """CREATE TABLE (columns, defaults, identity, generated, checks) and its sequences."""

    def q(*parts: str) -> str:
        return sql.Identifier(*parts).as_string(None)

    statements: list[str] = []
    lines: list[str] = []
    owned: list[tuple[str, str]] = []
    for col in shape.columns:
        line = f"{q(col['name'])} {col['type']}"
        if col["collation"]:
            line += f" COLLATE {col['collation']}"
        if col["identity"]:
            kind = "ALWAYS" if col["identity"] == "a" else "BY DEFAULT"
            line += f" GENERATED {kind} AS IDENTITY"
        elif col["generated"]:
            line += f" GENERATED ALWAYS AS ({col['default']}) STORED"
        elif col["sequence"]:
            # serial: a sequence of the new table's own, owned by its column.
            seq = rename(col["sequence"])
            statements.append(f"CREATE SEQUENCE {q(staging, seq)}")
            line += f" DEFAULT nextval('{q(staging, seq)}'::regclass)"
            owned.append((seq, col["name"]))
        elif col["default"] is not None:
            line += f" DEFAULT {col['default']}"
        if col["not_null"]:
            line += " NOT NULL"
        lines.append(line)
    for name, definition in shape.checks:
        lines.append(f"CONSTRAINT {q(rename(name))} {definition}")
    options = f" WITH ({', '.join(shape.reloptions)})" if shape.reloptions else ""
    statements.append(
        f"CREATE TABLE {q(staging, table)} (\n  " + ",\n  ".join(lines) + f"\n){options}"
    )
    for seq, column in owned:
        statements.append(f"ALTER SEQUENCE {q(staging, seq)} OWNED BY {q(staging, table, column)}")
    if shape.comment is not None:
        statements.append(f"COMMENT ON TABLE {q(staging, table)} IS {_literal(shape.comment)}")
    for col in shape.columns:
        if col["comment"] is not None:
            statements.append(
                f"COMMENT ON COLUMN {q(staging, table, col['name'])} IS {_literal(col['comment'])}"
            )
    return statements


def _index_sql(definition: str, name: str, staging: str, table: str, unique: bool) -> str:
    """An index definition re-targeted: ``CREATE [UNIQUE] INDEX name ON tbl USING ...``."""
    tail = definition[definition.index(" USING ") :]
    head = "CREATE UNIQUE INDEX" if unique else "CREATE INDEX"
    target = sql.Identifier(staging, table).as_string(None)
    return f"{head} {sql.Identifier(name).as_string(None)} ON {target}{tail}"


def index_statements(shape: TableShape, staging: str, table: str, rename: Renamer) -> list[str]:
    """Indexes, including those that back primary keys and unique constraints (attached
    to their constraints afterwards): built once the rows are in, SHARE lock only."""
    statements = []
    for name, definition, index_def in shape.keys:
        if index_def and not definition.startswith("EXCLUDE"):
            statements.append(_index_sql(index_def, rename(name), staging, table, unique=True))
    for name, definition in shape.indexes:
        unique = definition.startswith("CREATE UNIQUE")
        statements.append(_index_sql(definition, rename(name), staging, table, unique))
    return statements


def key_statements(shape: TableShape, staging: str, table: str, rename: Renamer) -> list[str]:
    """Primary key and unique constraints on the indexes just built; exclusion ones."""
    staged = sql.Identifier(staging, table).as_string(None)
    statements = []
    for name, definition, index_def in shape.keys:
        ident = sql.Identifier(rename(name)).as_string(None)
        if index_def and not definition.startswith("EXCLUDE"):
            kind = "PRIMARY KEY" if definition.startswith("PRIMARY KEY") else "UNIQUE"
            deferrable = definition[definition.find(" DEFERRABLE") :] if " DEFERRABLE" in (
                definition) else ""  # fmt: skip
            statements.append(
                f"ALTER TABLE {staged} ADD CONSTRAINT {ident} {kind} USING INDEX {ident}"
                + deferrable
            )
        else:
            statements.append(f"ALTER TABLE {staged} ADD CONSTRAINT {ident} {definition}")
    return statements


def _literal(text: str) -> str:
    return sql.Literal(text).as_string(None)
