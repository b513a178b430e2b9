"""The diff of a PostgreSQL table at promotion, against its peer: the two checksums alone.

    python bench/fork_diff.py [--rows 1000000] [--rounds 3]

The table of bench/promote_postgres.py, the same rows in two servers (a run's and
production, both started by omnilab's local runtime); then 1% of the run's rows change
(half updated, a quarter deleted, a quarter added). Measured, alternating, ``--rounds``
times: the diff (:func:`omnilab.services.postgres.diff.diff_tables`: per-row hashes by
primary key from both servers, joined in numpy), and its peer, the two servers' table
checksums computed at the same time (what verifying a promotion costs). Goal: the diff
within 2x the checksums. The wall times' medians and their ratio go to
bench/results/fork_diff.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from _common import write
from promote_postgres import fill

from omnilab import Postgres, Stack
from omnilab.progress import QuietReporter
from omnilab.services.postgres import checksum as postgres_checksum
from omnilab.services.postgres import diff as postgres_diff


def dsn(stack: Stack) -> str:
    from omnilab.services.postgres.fork import endpoint_dsn

    return endpoint_dsn(stack.endpoint("postgres"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))
    quiet = QuietReporter()
    with (
        Stack(Postgres(), runtime="local", reporter=quiet) as run,
        Stack(Postgres(database="omnimind"), runtime="local", reporter=quiet) as production,
    ):
        src, dst = run.postgres, production.postgres
        fill(src, args.rows)  # random() and now(): the same rows are copied, not made twice
        dst.execute(
            "CREATE TABLE scores (id bigint PRIMARY KEY, name text NOT NULL, score double "
            "precision, created timestamptz, payload jsonb)"
        )
        with (
            src.cursor().copy("COPY scores TO STDOUT (FORMAT binary)") as out,
            dst.cursor().copy("COPY scores FROM STDIN (FORMAT binary)") as into,
        ):
            for chunk in out:
                into.write(chunk)
        dst.execute("VACUUM ANALYZE scores")
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

        def checksums() -> None:
            with ThreadPoolExecutor(max_workers=1) as pool:
                theirs = pool.submit(
                    postgres_checksum.checksum, dst, oid_dst, "scores", "hash_columns"
                )
                postgres_checksum.checksum(src, oid_src, "scores", "hash_columns")
                theirs.result()

        found = {}

        def diff() -> None:
            ours = postgres_diff.Side(src, "public", "scores", oid_src, dsn(run))
            prod = postgres_diff.Side(dst, "public", "scores", oid_dst, dsn(production))
            found["diff"] = postgres_diff.diff_tables(ours, prod, "rows")

        walls: dict[str, list[float]] = {"diff": [], "checksums": []}
        for _ in range(args.rounds):
            for name, work in (("checksums", checksums), ("diff", diff)):
                began = time.perf_counter()
                work()
                walls[name].append(time.perf_counter() - began)
        result = found["diff"]
        medians = {name: statistics.median(values) for name, values in walls.items()}
        ratio = medians["diff"] / medians["checksums"]
        print(
            f"{args.rows:,} rows, {result.summary()}: diff {medians['diff']:.3f}s, "
            f"checksums {medians['checksums']:.3f}s, ratio {ratio:.2f} (goal <= 2)"
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
                "goal": 2.0,
            },
        )
        print(f"written: {path}")


if __name__ == "__main__":
    main()
