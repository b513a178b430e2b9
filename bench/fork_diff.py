"""The diff of a PostgreSQL table at promotion, against its peer: the two checksums alone.

    python bench/fork_diff.py [--rows 1000000] [--rounds 3]

The table of bench/promote_postgres.py in production, forked into a run's server by
omnilab (``Fork.prepare`` + ``Fork.copy``, as a run forks its seeds; both servers started
by omnilab's local runtime); then 1% of the run's rows change (half updated, a quarter
deleted, a quarter added). Measured, alternating, ``--rounds`` times:

- the peer: the two servers' table checksums computed at the same time (what verifying
  a promotion costs);
- the diff at promotion (:func:`omnilab.services.postgres.diff.diff_tables` with the
  fork's base, as ``omnilab promote --dry-run`` calls it): production's checksum checked
  against the fork's, then only the rows the run wrote since the fork hashed;
- the whole diff, as when production changed since the fork or the table was not forked:
  per-row hashes by primary key from both servers, joined in numpy.

Goal: the diff within 2x the checksums. The wall times' medians and their ratios go to
bench/results/fork_diff.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from _common import write
from promote_postgres import fill

from omnilab import Postgres, Stack
from omnilab.config import get_settings
from omnilab.fork import Fork
from omnilab.progress import QuietReporter
from omnilab.promote import PostgresTable
from omnilab.services.postgres import checksum as postgres_checksum
from omnilab.services.postgres import diff as postgres_diff
from omnilab.services.postgres.fork import READ_ONLY_OPTIONS, endpoint_dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))
    os.environ["OMNILAB_FORK_CACHE_SIZE"] = "0"  # the fork itself is not measured here
    quiet = QuietReporter()
    with (
        Stack(Postgres(), runtime="local", reporter=quiet) as run,
        Stack(Postgres(database="omnimind"), runtime="local", reporter=quiet) as production,
    ):
        src, dst = run.postgres, production.postgres
        fill(dst, args.rows)
        os.environ["POSTGRES_URL"] = production.env["POSTGRES_URL"]
        fork = Fork.prepare([PostgresTable("scores")], get_settings(), quiet)
        provenance = fork.copy(run)[0]
        base = postgres_diff.ForkBase(
            provenance["run"]["xmin"],
            provenance["production"]["checksum"],
            provenance["run"]["next_xid"],
        )
        step = 100  # 1% of the rows: every 100th updated, deleted or added in turn
        src.execute(f"UPDATE scores SET name = name || '!' WHERE id % {step * 2} = 0")
        src.execute(f"DELETE FROM scores WHERE id % {step * 4} = 1")
        src.execute(
            "INSERT INTO scores SELECT g, 'new ' || g, 0, now(), '{}' "
            f"FROM generate_series({args.rows + 1}, {args.rows + args.rows // (step * 4)}) g"
        )
        src.execute("VACUUM ANALYZE scores")
        oid_src = src.execute("SELECT 'scores'::regclass::oid").fetchone()[0]
        oid_dst = dst.execute("SELECT 'scores'::regclass::oid").fetchone()[0]
        run_dsn, prod_dsn = endpoint_dsn(run.endpoint("postgres")), production.env["POSTGRES_URL"]

        def checksums() -> None:
            with ThreadPoolExecutor(max_workers=1) as pool:
                theirs = pool.submit(
                    postgres_checksum.checksum, dst, oid_dst, "scores", "hash_columns"
                )
                postgres_checksum.checksum(src, oid_src, "scores", "hash_columns")
                theirs.result()

        found = {}

        def diff(since: postgres_diff.ForkBase | None) -> postgres_diff.ItemDiff:
            # Production as a promotion reads it: one read-only REPEATABLE READ session.
            with psycopg.connect(prod_dsn, options=READ_ONLY_OPTIONS) as prod:
                prod.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                prod.read_only = True
                prod.execute("SELECT 1")
                ours = postgres_diff.Side(src, "public", "scores", oid_src, run_dsn)
                theirs = postgres_diff.Side(prod, "public", "scores", oid_dst, prod_dsn)
                return postgres_diff.diff_tables(ours, theirs, "rows", since=since)

        def since_fork() -> None:
            found["since_fork"] = diff(base)
            assert found["since_fork"].incremental, found["since_fork"].notes

        def whole() -> None:
            found["whole"] = diff(None)

        arms = (("checksums", checksums), ("diff", since_fork), ("whole diff", whole))
        walls: dict[str, list[float]] = {name: [] for name, _ in arms}
        for _ in range(args.rounds):
            for name, work in arms:
                began = time.perf_counter()
                work()
                walls[name].append(time.perf_counter() - began)
        result, full = found["since_fork"], found["whole"]
        same = (result.added, result.changed, result.removed, result.examples) == (
            full.added,
            full.changed,
            full.removed,
            full.examples,
        )
        assert same, (result, full)  # the two routes must agree exactly
        medians = {name: statistics.median(values) for name, values in walls.items()}
        ratio = medians["diff"] / medians["checksums"]
        whole_ratio = medians["whole diff"] / medians["checksums"]
        print(
            f"{args.rows:,} rows, {result.summary()} ({result.notes[0]}): "
            f"diff {medians['diff']:.3f}s, checksums {medians['checksums']:.3f}s, "
            f"ratio {ratio:.2f} (goal <= 2); whole diff {medians['whole diff']:.3f}s, "
            f"ratio {whole_ratio:.2f}"
        )
        path = write(
            "fork_diff",
            {
                "rows": args.rows,
                "rounds": args.rounds,
                "diff": result.model_dump(mode="json"),
                "wall_s": walls,
                "median_s": medians,
                "ratio": round(ratio, 3),
                "whole_diff_ratio": round(whole_ratio, 3),
                "goal": 2.0,
            },
        )
        print(f"written: {path}")


if __name__ == "__main__":
    main()
