"""An experiment whose results can be promoted into production.

omnilab run experiments/promote_demo.py               # the stack's data is kept
omnilab promote RUN --dry-run                          # the plan
omnilab promote RUN                                    # into QDRANT_URL, REDIS_URL, POSTGRES_URL
omnilab run experiments/promote_demo.py --promote      # both at once, if accept() agrees
"""

from __future__ import annotations

import json
import random

from qdrant_client import models

from omnilab import Experiment, Params, Postgres, Qdrant, Redis
from omnilab.promote import PostgresTable, QdrantCollection, RedisKeys


class PromoteDemo(Experiment):
    """Embed a small corpus; keep vectors in Qdrant, a cache in Redis, scores in PostgreSQL."""

    services = [Qdrant(), Redis(), Postgres()]
    gpu = False
    promotes = [QdrantCollection("docs"), RedisKeys("emb:*"), PostgresTable("scores")]

    class Params(Params):
        n_docs: int = 50
        dim: int = 16
        seed: int = 0
        #: accept() promotes only runs whose mean score reaches this.
        min_score: float = 0.0

    def run(self, ctx):
        p = ctx.params
        rng = random.Random(p.seed)
        vectors = [[rng.gauss(0, 1) for _ in range(p.dim)] for _ in range(p.n_docs)]
        scores = [rng.random() for _ in range(p.n_docs)]

        ctx.qdrant.create_collection(
            "docs", vectors_config=models.VectorParams(size=p.dim, distance=models.Distance.COSINE)
        )
        ctx.qdrant.upsert(
            "docs",
            points=[
                models.PointStruct(id=i, vector=v, payload={"title": f"doc {i}", "seed": p.seed})
                for i, v in enumerate(vectors)
            ],
        )
        with ctx.redis.pipeline() as pipe:
            for i, v in enumerate(vectors):
                pipe.set(f"emb:{i}", json.dumps(v[:4]), ex=86_400 if i % 2 else None)
            pipe.hset("emb:meta", mapping={"dim": p.dim, "seed": p.seed})
            pipe.execute()
        db = ctx.postgres
        db.execute("CREATE TABLE scores (doc_id int PRIMARY KEY, score double precision NOT NULL)")
        with db.cursor() as cur, cur.copy("COPY scores (doc_id, score) FROM STDIN") as copy:
            for i, score in enumerate(scores):
                copy.write_row((i, score))
        mean = sum(scores) / len(scores)
        ctx.log_metric("mean_score", mean)
        return {"docs": p.n_docs, "mean_score": round(mean, 4), "min_score": p.min_score}

    def accept(self, summary):
        return summary["mean_score"] >= summary["min_score"]
