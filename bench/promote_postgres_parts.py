"""The parts of a PostgreSQL promotion, one statement at a time: CPU seconds each.

    python bench/promote_postgres_parts.py [--rows 1000000] [--reps 3]

The table of bench/promote_postgres.py, in a run's server; production is a second
server (both started by omnilab's local runtime). Each statement runs alone, ``--reps``
times, alternating with its alternatives; printed: the least CPU seconds its server's
processes spent on it (parallel workers included) and the median wall time. Rows go
through files written and read by the servers (``COPY ... TO/FROM 'file'``), so no
client's cost is in these figures. What it answers: which COPY format is cheaper for
these column types, what FREEZE changes, what each checksum method, each index build
and ANALYZE cost, what parallel workers add, what splitting the copy into slices by
ctid range over several psql pairs changes (wall and CPU of the copy phase alone, both
servers and the psql processes counted), and so how many CPU seconds a promotion needs
at the least, against the machine's cores.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _common import write
from _cpu_sampler import CpuSampler, postmaster_of
from promote_postgres import fill

from omnilab import Postgres, Stack
from omnilab.progress import QuietReporter
from omnilab.services.postgres.checksum import column_hash_sql, table_columns
from omnilab.services.postgres.service import find_postgres

COLUMNS = (
    "id bigint NOT NULL, name text NOT NULL, score double precision, created timestamptz,"
    " payload jsonb"
)


def measure(server: Any, statements: Callable[[], None]) -> tuple[float, float]:
    """(CPU seconds of the server's processes, wall seconds) of ``statements``."""
    with CpuSampler({postmaster_of(server): "server"}) as sampler:
        began = time.perf_counter()
        statements()
        wall = time.perf_counter() - began
    return sum(sampler.by_statement().values()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))
    quiet = QuietReporter()
    files = tempfile.mkdtemp(prefix="omnilab-parts-")
    os.chmod(files, 0o777)  # the servers run as an unprivileged user
    binary, text = f"{files}/rows.bin", f"{files}/rows.txt"
    results: dict[str, list[tuple[float, float]]] = {}
    with (
        Stack(Postgres(), runtime="local", reporter=quiet) as source,
        Stack(Postgres(database="omnimind"), runtime="local", reporter=quiet) as production,
    ):
        src, dst = source.postgres, production.postgres
        fill(src, args.rows)
        for conn in (src, dst):
            conn.execute("SET max_parallel_workers_per_gather = 0")
            conn.execute("SET max_parallel_maintenance_workers = 0")
        src.execute(f"COPY scores TO '{binary}' (FORMAT binary)")
        src.execute(f"COPY scores TO '{text}'")
        expr = column_hash_sql(table_columns(src, src.execute("SELECT 'scores'::regclass::oid")
                                             .fetchone()[0]))  # fmt: skip

        def load(path: str, options: str, freeze: bool) -> Callable[[], None]:
            def run() -> None:
                dst.execute("BEGIN")
                dst.execute("TRUNCATE t")
                dst.execute(f"COPY t FROM '{path}' ({options}{', FREEZE' if freeze else ''})")
                dst.execute("COMMIT")

            return run

        def fresh(freeze: bool | None) -> None:
            """A new table: empty (None), or loaded with or without FREEZE."""
            dst.execute("DROP TABLE IF EXISTS t")
            dst.execute(f"CREATE TABLE t ({COLUMNS})")
            dst.execute("CHECKPOINT")
            if freeze is not None:
                load(binary, "FORMAT binary", freeze)()

        def parallel(workers: int, statement: str) -> Callable[[], None]:
            def run() -> None:
                dst.execute(f"SET max_parallel_maintenance_workers = {workers}")
                dst.execute(f"SET max_parallel_workers_per_gather = {workers}")
                dst.execute(statement)
                dst.execute("SET max_parallel_maintenance_workers = 0")
                dst.execute("SET max_parallel_workers_per_gather = 0")

            return run

        on_source: dict[str, Callable[[], None]] = {
            "source: COPY TO, binary": lambda: src.execute(
                "COPY scores TO '/dev/null' (FORMAT binary)"
            ),
            "source: COPY TO, text": lambda: src.execute("COPY scores TO '/dev/null'"),
            "source: COPY TO, binary, without payload (jsonb)": lambda: src.execute(
                "COPY scores (id, name, score, created) TO '/dev/null' (FORMAT binary)"
            ),
            "source: checksum hash_columns": lambda: src.execute(
                f"SELECT count(*), sum({expr}) FROM scores t"
            ).fetchone(),
            "source: checksum hash_record": lambda: src.execute(
                "SELECT count(*), sum(hash_record_extended(t, 0)) FROM scores t"
            ).fetchone(),
            "source: count(*)": lambda: src.execute("SELECT count(*) FROM scores").fetchone(),
        }
        on_production: list[tuple[str, bool | None, Callable[[], None]]] = [
            ("production: COPY FROM, binary", None, load(binary, "FORMAT binary", False)),
            ("production: COPY FROM, binary, FREEZE", None, load(binary, "FORMAT binary", True)),
            ("production: COPY FROM, text", None, load(text, "FORMAT text", False)),
            (
                "production: first checksum after a load",
                False,
                lambda: dst.execute(f"SELECT count(*), sum({expr}) FROM t").fetchone(),
            ),
            (
                "production: first checksum after a FREEZE load",
                True,
                lambda: dst.execute(f"SELECT count(*), sum({expr}) FROM t").fetchone(),
            ),
            ("production: ANALYZE", True, lambda: dst.execute("ANALYZE t")),
            (
                "production: CREATE UNIQUE INDEX (id)",
                True,
                lambda: dst.execute("CREATE UNIQUE INDEX ON t (id)"),
            ),
            (
                "production: CREATE INDEX (score)",
                True,
                lambda: dst.execute("CREATE INDEX ON t (score)"),
            ),
            (
                "production: CREATE INDEX (score), 2 parallel workers",
                True,
                parallel(2, "CREATE INDEX ON t (score)"),
            ),
            (
                "production: checksum, 2 parallel workers",
                True,
                parallel(2, f"SELECT count(*), sum({expr}) FROM t"),
            ),
        ]
        print(f"{args.rows:,} rows, {args.reps} reps, {os.cpu_count()} cores; load {load_avg()}")
        pages = src.execute("SELECT relpages FROM pg_class WHERE relname = 'scores'").fetchone()[0]
        urls = source.env["POSTGRES_URL"], production.env["POSTGRES_URL"]
        groups = {postmaster_of(src): "source", postmaster_of(dst): "production"}
        groups[os.getpid()] = "psql"
        for _ in range(args.reps):
            for name, run in on_source.items():
                results.setdefault(name, []).append(measure(src, run))
            for name, freeze, run in on_production:
                fresh(freeze)
                results.setdefault(name, []).append(measure(dst, run))
            for slices in (1, 2, 3):
                fresh(None)
                with CpuSampler(groups) as sampler:
                    began = time.perf_counter()
                    copy_in_slices(urls, pages, slices)
                    wall = time.perf_counter() - began
                assert dst.execute("SELECT count(*) FROM t").fetchone() == (args.rows,)
                name = f"copy phase alone: {slices} psql pair(s), servers and psql"
                if slices == 1:
                    name += ", FREEZE"
                spent = sum(sampler.by_statement().values())
                results.setdefault(name, []).append((spent, wall))
        dst.execute("DROP TABLE IF EXISTS t")
    for path in (binary, text):
        os.unlink(path)
    os.rmdir(files)
    out = {}
    for name, samples in results.items():
        cpu = min(c for c, _ in samples)
        wall = statistics.median(w for _, w in samples)
        out[name] = {"cpu_s": cpu, "wall_s": wall}
        print(f"  {cpu:6.2f} CPU s  {wall:6.2f} s wall  {name}")
    print(f"  load average after: {load_avg()}")
    path = write("promote_postgres_parts", {"rows": args.rows, "reps": args.reps, "parts": out})
    print(f"  results: {path}")


def copy_in_slices(urls: tuple[str, str], pages: int, slices: int) -> None:
    """The rows piped between psql pairs, one per ctid range: one pair loads FREEZE (one
    transaction), several cannot (a FREEZE load needs the transaction that emptied the
    table)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    psql = find_postgres().tool("psql")
    args = []
    for url in urls:
        parts = conninfo_to_dict(url)
        password = str(parts.pop("password", "") or "")
        args.append((make_conninfo(**parts), {**os.environ, "PGPASSWORD": password}))
    cuts = [round(pages * i / slices) for i in range(slices)] + [pages + 1]
    pairs = []
    for low, high in itertools.pairwise(cuts):
        where = "" if slices == 1 else f" WHERE ctid >= '({low},0)' AND ctid < '({high},0)'"
        out = f"COPY (SELECT * FROM scores{where}) TO STDOUT (FORMAT binary)"
        copy_in = "COPY t FROM STDIN (FORMAT binary, FREEZE)"
        load = (
            ["-c", "BEGIN", "-c", "TRUNCATE t", "-c", copy_in, "-c", "COMMIT"]
            if slices == 1
            else ["-c", "COPY t FROM STDIN (FORMAT binary)"]
        )
        reader = subprocess.Popen(
            [psql, "-X", "-q", "-d", args[0][0], "-c", out], stdout=subprocess.PIPE, env=args[0][1]
        )
        writer = subprocess.Popen(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", args[1][0], *load],
            stdin=reader.stdout,
            env=args[1][1],
        )
        assert reader.stdout is not None
        reader.stdout.close()
        pairs.append((reader, writer))
    for reader, writer in pairs:
        assert writer.wait() == 0 and reader.wait() == 0


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
