"""The smallest real experiment: write and read each service of a private stack.

omnilab run experiments/hello.py
omnilab run experiments/hello.py -p n_items=500 -p dim=16
"""

from __future__ import annotations

import math
import random
import time

from qdrant_client import models

from omnilab import Experiment, Params, Postgres, Qdrant, Redis


class Hello(Experiment):
    """Store items in Redis, PostgreSQL and Qdrant, read them back, time each service."""

    services = [Redis(), Postgres(), Qdrant()]
    gpu = False

    class Params(Params):
        n_items: int = 100
        dim: int = 8
        seed: int = 0

    def run(self, ctx):
        p = ctx.params
        rng = random.Random(p.seed)
        vectors = [[rng.gauss(0, 1) for _ in range(p.dim)] for _ in range(p.n_items)]

        # Redis: one hash per item, written in a pipeline, read back.
        t0 = time.perf_counter()
        with ctx.redis.pipeline() as pipe:
            for i in range(p.n_items):
                pipe.hset(f"item:{i}", mapping={"norm": math.dist(vectors[i], [0] * p.dim)})
            pipe.execute()
        redis_count = sum(1 for _ in ctx.redis.scan_iter("item:*", count=1000))
        ctx.log_metric("redis_ms", (time.perf_counter() - t0) * 1000)

        # PostgreSQL: a table, a COPY, an aggregate.
        t0 = time.perf_counter()
        db = ctx.postgres
        db.execute("CREATE TABLE items (id int PRIMARY KEY, norm double precision)")
        with db.cursor() as cur, cur.copy("COPY items (id, norm) FROM STDIN") as copy:
            for i in range(p.n_items):
                copy.write_row((i, float(ctx.redis.hget(f"item:{i}", "norm"))))
        pg_count, mean_norm = db.execute("SELECT count(*), avg(norm) FROM items").fetchone()
        ctx.log_metric("postgres_ms", (time.perf_counter() - t0) * 1000)

        # Qdrant: a collection, an upsert, a nearest-neighbour query of item 0.
        t0 = time.perf_counter()
        ctx.qdrant.create_collection(
            "items", vectors_config=models.VectorParams(size=p.dim, distance=models.Distance.COSINE)
        )
        ctx.qdrant.upsert(
            "items",
            points=[
                models.PointStruct(id=i, vector=v, payload={"i": i}) for i, v in enumerate(vectors)
            ],
        )
        hits = ctx.qdrant.query_points("items", query=vectors[0], limit=3).points
        ctx.log_metric("qdrant_ms", (time.perf_counter() - t0) * 1000)

        for step, hit in enumerate(hits):
            ctx.log_metric("top_score", hit.score, step=step)
        (ctx.artifacts_dir / "neighbours.txt").write_text(
            "\n".join(f"{h.id}\t{h.score:.4f}" for h in hits) + "\n"
        )
        return {
            "redis_keys": redis_count,
            "postgres_rows": pg_count,
            "qdrant_points": ctx.qdrant.count("items").count,
            "mean_norm": round(mean_norm, 4),
            "nearest_is_self": hits[0].id == 0,
        }
