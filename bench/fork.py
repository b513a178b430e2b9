"""Forking from production: the first fork (copy and verification) against the plain tools
moving the same data, and a second fork of unchanged data from the fork cache against the
first, same servers, same run.

    python bench/fork.py [--rows 1000000] [--points 100000] [--keys 100000] [--rounds 3]

Production and the run's stack are two stacks of omnilab's local runtime on this host
(PostgreSQL, Redis, Qdrant each). Production holds a table of ``--rows`` rows (bigint
primary key, text, double, timestamptz), a collection of ``--points`` points of 384
dimensions with payloads (HNSW indexing off, as in bench/promote_qdrant.py) and ``--keys``
keys of six types, half with TTLs (as in bench/promote_redis.py).

Arms, the run's stack emptied before each:

- ``peer: plain tools``: ``pg_dump -Fc -t big | pg_restore`` into the run's database,
  Qdrant ``create_snapshot`` on production + ``recover_snapshot`` on the run's server (it
  downloads the file itself), pipelined ``DUMP``/``RESTORE`` of the keys (SCAN, batches of
  1,000). They copy; they do not verify.
- ``plain tools at once``: the same three, one thread each, started together (not the
  goal's peer: omnilab copies the services at once, and this arm shows how much of its
  lead is that overlap rather than its copies).
- ``omnilab first fork``: ``Fork.prepare`` + ``Fork.copy`` as a run does them, with an
  empty fork cache: copy, verification on both sides, and the cache entry written.
- ``omnilab first fork, cache off``: the same with ``OMNILAB_FORK_CACHE_SIZE=0``: copy and
  verification, no entry written.
- ``omnilab first fork, points copied``: the same, cache off, with the collection's points
  copied as they are with a read-only Qdrant key (production's key here may stream shard
  snapshots, as the plain tools' snapshot route needs: the other arms' collection moves
  as its shards' snapshots; docs/fork.md).
- ``omnilab second fork``: the same, with the cache the first fork filled.

Goals: first fork >= 1x the plain tools' speed; second fork <= 0.1x the first fork's time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import summary, write
from _promote import state_dir
from promote_redis import dump_restore
from promote_redis import fill as fill_keys
from qdrant_client import QdrantClient, models

from omnilab import Postgres, Qdrant, Redis, Stack
from omnilab.config import get_settings
from omnilab.fork import Fork
from omnilab.progress import QuietReporter
from omnilab.promote import PostgresTable, QdrantCollection, RedisKeys
from omnilab.services.postgres.service import find_postgres
from omnilab.services.qdrant import transfer

DIM = 384


def fill_table(dsn: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE big (id bigint PRIMARY KEY, name text NOT NULL, score double precision,"
            " created timestamptz)"
        )
        conn.execute(
            "INSERT INTO big SELECT i, 'name ' || i, i * 0.5, "
            "'2024-01-01'::timestamptz + i * interval '1 second' "
            f"FROM generate_series(1, {rows}) i"
        )
        conn.execute("VACUUM ANALYZE big")


def fill_points(client: QdrantClient, n: int) -> None:
    client.create_collection(
        "docs",
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0),
    )
    client.create_payload_index("docs", "source", field_schema="keyword", wait=True)
    rng = np.random.default_rng(0)
    client.upload_collection(
        "docs",
        vectors=rng.standard_normal((n, DIM)).astype(np.float32),
        payload=({"title": f"doc {i}", "source": "bench", "chunk": i % 17} for i in range(n)),
        ids=range(n),
        batch_size=256,
        parallel=2,
        wait=True,
    )


def pg_dump_restore(prod_dsn: str, run_dsn: str) -> None:
    postgres = find_postgres()
    dump = subprocess.Popen(
        [postgres.tool("pg_dump"), "-Fc", "-Z0", "-t", "public.big", "-d", prod_dsn],
        stdout=subprocess.PIPE,
    )
    restore = subprocess.run(
        [postgres.tool("pg_restore"), "--no-owner", "-d", run_dsn],
        stdin=dump.stdout,
        check=False,
    )
    assert dump.stdout is not None
    dump.stdout.close()
    assert dump.wait() == 0 and restore.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    state_dir()
    quiet = QuietReporter()
    services = lambda: [Postgres(), Redis(decode_responses=False), Qdrant(embedded=False)]  # noqa: E731
    with (
        Stack(*services(), runtime="local", reporter=quiet) as production,
        Stack(*services(), runtime="local", reporter=quiet) as run,
    ):
        prod_q = production.endpoint("qdrant")
        for name in ("POSTGRES_URL", "REDIS_URL", "QDRANT_URL", "QDRANT_API_KEY"):
            os.environ[name] = production.env[name]
        os.environ["QDRANT_GRPC_PORT"] = str(prod_q.ports["grpc"])
        prod_dsn, run_dsn = production.env["POSTGRES_URL"], run.env["POSTGRES_URL"]
        began = time.perf_counter()
        fill_table(prod_dsn, args.rows)
        fill_points(production.qdrant, args.points)
        fill_keys(production.redis, args.keys)
        print(
            f"fork from production: {args.rows:,} rows, {args.points:,} points of {DIM} dims, "
            f"{args.keys:,} keys; local runtime, both stacks on this host "
            f"(filled in {time.perf_counter() - began:.1f}s)",
            flush=True,
        )
        seeds = [PostgresTable("big"), QdrantCollection("docs"), RedisKeys("emb:*")]

        def reset() -> None:
            run.postgres.execute("DROP TABLE IF EXISTS big")
            run.redis.flushall()
            for collection in run.qdrant.get_collections().collections:
                run.qdrant.delete_collection(collection.name)
            for snapshot in production.qdrant.list_snapshots("docs"):
                production.qdrant.delete_snapshot("docs", snapshot.name, wait=True)

        def snapshot_route() -> None:
            """Qdrant's own route: a snapshot created, recovered from its URL."""
            made = production.qdrant.create_snapshot("docs", wait=True)
            assert made is not None
            run.qdrant.recover_snapshot(
                "docs",
                location=f"{production.env['QDRANT_URL']}/collections/docs/snapshots/{made.name}",
                api_key=production.env["QDRANT_API_KEY"],
                checksum=made.checksum,
                priority=models.SnapshotPriority.SNAPSHOT,
                wait=True,
            )

        def plain_tools() -> dict[str, float]:
            parts = {}
            t = time.perf_counter()
            pg_dump_restore(prod_dsn, run_dsn)
            parts["postgres_s"] = time.perf_counter() - t
            t = time.perf_counter()
            snapshot_route()
            parts["qdrant_s"] = time.perf_counter() - t
            t = time.perf_counter()
            dump_restore(production.redis, run.redis)
            parts["redis_s"] = time.perf_counter() - t
            return parts

        def plain_tools_at_once() -> dict[str, float]:
            """The same three tools, one thread each, started together: what omnilab's
            fork does with its own copies (the goal is against the tools one after
            another, as a person runs them; this arm says how much of the gain is the
            overlap)."""
            from concurrent.futures import ThreadPoolExecutor

            def timed(work: Callable[[], Any]) -> float:
                t = time.perf_counter()
                work()
                return time.perf_counter() - t

            with ThreadPoolExecutor(max_workers=3) as pool:
                pg = pool.submit(timed, lambda: pg_dump_restore(prod_dsn, run_dsn))
                qd = pool.submit(timed, snapshot_route)
                rd = pool.submit(timed, lambda: dump_restore(production.redis, run.redis))
                return {"postgres_s": pg.result(), "qdrant_s": qd.result(), "redis_s": rd.result()}

        def forked(cache: str, size: str = "10GiB", points: bool = False) -> dict[str, Any]:
            os.environ["OMNILAB_FORK_CACHE_DIR"] = cache
            os.environ["OMNILAB_FORK_CACHE_SIZE"] = size
            fork = Fork.prepare(seeds, get_settings(), quiet)
            whole_shards = transfer.whole_shards
            if points:  # what a read-only key gets: no shard may move as a snapshot
                transfer.whole_shards = lambda *args: None
            try:
                records = fork.copy(run)
            finally:
                transfer.whole_shards = whole_shards
            out: dict[str, Any] = {}
            for record in records:
                service = record["service"]
                seconds = record["seconds"]
                out[f"{service}_s"] = sum(seconds.values())
                out[f"{service}_verify_s"] = seconds["verify"]
                out[f"{service}_from_cache"] = bool(record.get("cache", {}).get("served"))
                if "method" in record:
                    out[f"{service}_method"] = record["method"]
            return out

        arms: dict[str, list[dict[str, Any]]] = {
            "peer: plain tools": [],
            "plain tools at once": [],
            "omnilab first fork, cache off": [],
            "omnilab first fork, points copied": [],
            "omnilab first fork": [],
            "omnilab second fork": [],
        }
        for i in range(args.rounds):
            cache = tempfile.mkdtemp(prefix="omnilab-fork-cache-")
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("peer: plain tools", plain_tools),
                ("plain tools at once", plain_tools_at_once),
                ("omnilab first fork, cache off", lambda cache=cache: forked(cache, "0")),
                (
                    "omnilab first fork, points copied",
                    lambda cache=cache: forked(cache, "0", points=True),
                ),
                ("omnilab first fork", lambda cache=cache: forked(cache)),
                ("omnilab second fork", lambda cache=cache: forked(cache)),
            ]
            for name, arm in steps:
                reset()
                t = time.perf_counter()
                detail = arm() or {}
                elapsed = time.perf_counter() - t
                assert run.postgres.execute("SELECT count(*) FROM big").fetchone()[0] == args.rows
                assert run.qdrant.count("docs", exact=True).count == args.points
                assert run.redis.dbsize() == args.keys
                arms[name].append({"elapsed_s": elapsed, **detail})
                parts = ", ".join(
                    f"{k.removesuffix('_s')} {v:.2f}" for k, v in detail.items() if k.endswith("_s")
                )
                how = "".join(
                    f", {k.removesuffix('_method')} by {v}"
                    for k, v in detail.items()
                    if k.endswith("_method")
                )
                print(f"  round {i + 1} {name:20s} {elapsed:7.2f}s  ({parts}{how})", flush=True)
            shutil.rmtree(cache, ignore_errors=True)
        reset()
    report(arms, args)


def report(arms: dict[str, list[dict[str, Any]]], args: Any) -> None:
    medians = {}
    for name, samples in arms.items():
        keys = [k for k, v in samples[0].items() if isinstance(v, float)]
        medians[name] = {k: statistics.median(s[k] for s in samples) for k in keys}
        medians[name]["elapsed"] = summary([s["elapsed_s"] for s in samples])
    peer = medians["peer: plain tools"]["elapsed_s"]
    first = medians["omnilab first fork"]["elapsed_s"]
    second = medians["omnilab second fork"]["elapsed_s"]
    for name, m in medians.items():
        parts = ", ".join(
            f"{k.removesuffix('_s')} {v:.2f}"
            for k, v in m.items()
            if k.endswith("_s") and k != "elapsed_s"
        )
        print(f"  {name}: median {m['elapsed_s']:.2f}s ({parts})")
    at_once = medians["plain tools at once"]["elapsed_s"]
    speed = peer / first
    cached = second / first
    print(f"  first fork, speed against the plain tools: {speed:.2f}x (goal >= 1x)")
    print(f"  first fork, speed against the plain tools run at once: {at_once / first:.2f}x")
    uncached = medians["omnilab first fork, cache off"]["elapsed_s"]
    print(f"  first fork with the cache off (no entry written): {peer / uncached:.2f}x")
    by_points = medians["omnilab first fork, points copied"]["elapsed_s"]
    print(f"  first fork, cache off, points copied (a read-only key): {peer / by_points:.2f}x")
    print(f"  second fork from the cache, time against the first: {cached:.2f}x (goal <= 0.1x)")
    data = {
        "rows": args.rows,
        "points": args.points,
        "dims": DIM,
        "keys": args.keys,
        "rounds": args.rounds,
        "first_fork_speed_ratio": speed,
        "first_fork_goal": 1.0,
        "first_fork_speed_against_tools_at_once": at_once / first,
        "first_fork_cache_off_speed_ratio": peer / uncached,
        "first_fork_points_copied_speed_ratio": peer / by_points,
        "second_fork_time_ratio": cached,
        "second_fork_goal": 0.1,
        "medians": medians,
        "samples": arms,
    }
    print(f"  results: {write('fork', data)}")


if __name__ == "__main__":
    main()
