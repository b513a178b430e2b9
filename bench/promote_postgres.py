"""PostgreSQL promotion: a 1,000,000-row table from a run's database into production,
against ``pg_dump -Fc -t TABLE | pg_restore`` of that table, same servers, same run.

    python bench/promote_postgres.py [--rows 1000000] [--rounds 3] [--cpu]

The table: id bigint primary key, name text, score double precision, created
timestamptz, payload jsonb, and an index on score. The peer is the straightforward tool:
pg_dump (custom format, its default compression) piped into pg_restore (schema, data,
primary key, index). omnilab's figure is the whole promotion of the item: plan (counts,
catalogs of both sides), the staged copy (COPY in binary format, streamed, loaded FREEZE,
with the source's checksum computed meanwhile), production's checksum beside ANALYZE and
then the index builds, the comparison, and the switch transaction. Both servers are
PostgreSQL started by omnilab's local runtime (fsync off, as every experiment stack):
both arms write into the same server. Production is emptied before every arm.

``--cpu`` adds one untimed round of each arm in which the CPU seconds of every server
process and of this process's children (psql, pg_dump, pg_restore) are sampled from
/proc and printed per statement: where the work goes, against the budget of the
machine's cores.

Goal: omnilab >= 3x faster.
"""

from __future__ import annotations

import argparse
import os
import subprocess

from _cpu_sampler import CpuSampler, postmaster_of
from _promote import alternate, promote_item, report, state_dir
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from omnilab import Postgres, Stack
from omnilab.progress import QuietReporter
from omnilab.services.postgres.promotion import PostgresTable
from omnilab.services.postgres.service import find_postgres


def fill(conn, rows: int) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        "CREATE TABLE scores (id bigint PRIMARY KEY, name text NOT NULL, score double precision,"
        " created timestamptz, payload jsonb)"
    )
    conn.execute(
        "INSERT INTO scores SELECT g, 'doc ' || g, random(), now() - g * interval '1 second',"
        " jsonb_build_object('k', g %% 100, 'tag', 't' || (g %% 7)) FROM generate_series(1, %s) g",
        (rows,),
    )
    conn.execute("CREATE INDEX scores_score_idx ON scores (score)")
    conn.execute("VACUUM ANALYZE scores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="sample CPU seconds per process")
    args = parser.parse_args()
    state_dir()
    quiet = QuietReporter()
    install = find_postgres()
    with (
        Stack(Postgres(), runtime="local", reporter=quiet) as source,
        Stack(Postgres(database="omnimind"), runtime="local", reporter=quiet) as production,
    ):
        os.environ["POSTGRES_URL"] = production.env["POSTGRES_URL"]
        src_url, dst_url = source.env["POSTGRES_URL"], production.env["POSTGRES_URL"]
        fill(source.postgres, args.rows)
        size = source.postgres.execute("SELECT pg_total_relation_size('scores')").fetchone()[0]
        print(
            f"postgres promotion, {args.rows:,}-row table ({size / 1e6:.0f} MB with its indexes),"
            f" {args.rounds} rounds; postgres {install.version} ({install.source})"
        )
        dst = production.postgres

        def reset() -> None:
            dst.execute("DROP TABLE IF EXISTS public.scores")
            for (schema,) in dst.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'omnilab%'"
            ).fetchall():
                dst.execute(f'DROP SCHEMA "{schema}" CASCADE')

        def pg_dump_restore() -> None:
            src, src_env = without_password(src_url)
            dst_conninfo, dst_env = without_password(dst_url)
            dump = subprocess.Popen(
                [install.tool("pg_dump"), "-Fc", "-t", "public.scores", src],
                stdout=subprocess.PIPE,
                env=src_env,
            )
            subprocess.run(
                [install.tool("pg_restore"), "--no-owner", "-d", dst_conninfo],
                stdin=dump.stdout,
                check=True,
                env=dst_env,
            )
            assert dump.wait() == 0

        arms = {
            "peer: pg_dump | pg_restore": pg_dump_restore,
            "omnilab promote": lambda: promote_item(
                PostgresTable("scores"), source.endpoint("postgres")
            ),
        }
        results = alternate(arms, reset, args.rounds)
        assert dst.execute("SELECT count(*) FROM scores").fetchone() == (args.rows,)
        cpu = cpu_round(arms, reset, source.postgres, dst) if args.cpu else {}
    report(
        "promote_postgres",
        results,
        "peer: pg_dump | pg_restore",
        3.0,
        {
            "rows": args.rows,
            "bytes": size,
            "rounds": args.rounds,
            "postgres": f"{install.version} ({install.source})",
            "cores": os.cpu_count(),
            "cpu_seconds": cpu,
        },
    )


def without_password(url: str) -> tuple[str, dict[str, str]]:
    """The connection string for a command line, its password for the environment:
    a password on a command line is visible to every local user (ps)."""
    parts = conninfo_to_dict(url)
    password = str(parts.pop("password", "") or "")
    return make_conninfo(**parts), {**os.environ, "PGPASSWORD": password}  # type: ignore[arg-type]


def cpu_round(arms, reset, src, dst) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """One more round of each arm, its processes' CPU seconds sampled."""
    groups = {postmaster_of(src): "source", postmaster_of(dst): "production", os.getpid(): "client"}
    out = {}
    for name, arm in arms.items():
        reset()
        with CpuSampler(groups) as sampler:
            arm()
        spent = sampler.by_statement()
        total = sum(spent.values())
        print(f"  CPU seconds, {name} (untimed round): {total:.2f} in all")
        for what, seconds in spent.items():
            if seconds >= 0.01:
                print(f"    {seconds:6.2f}  {what}")
        out[name] = {**spent, "total": total}
    return out


if __name__ == "__main__":
    main()
