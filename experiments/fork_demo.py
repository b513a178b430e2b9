"""An experiment that starts from production's data: a verified copy, made read-only.

It forks what experiments/promote_demo.py promotes, so production has something to give:

omnilab run experiments/promote_demo.py --promote     # production now holds docs, emb:*, scores
omnilab run experiments/fork_demo.py                  # forks them, then re-scores the docs
omnilab run experiments/fork_demo.py -p sample=0.2    # a seeded fifth of each
omnilab run experiments/fork_demo.py --no-seed        # starts empty: nothing copied
omnilab runs show RUN                                 # the fork's provenance, per item

Production is read from QDRANT_URL, REDIS_URL and POSTGRES_URL, and only read
(docs/fork.md).
"""

from __future__ import annotations

import math

from omnilab import Experiment, Params, Postgres, Qdrant, Redis
from omnilab.promote import PostgresTable, QdrantCollection, RedisKeys


class ForkDemo(Experiment):
    """Re-score production's documents by vector norm, on a private copy of them."""

    services = [Qdrant(), Redis(), Postgres()]
    gpu = False

    class Params(Params):
        #: The fraction of each item copied (None: all of it), the same for the same seed.
        sample: float | None = None
        seed: int = 0

    def seeds(self, params):
        """The items to copy, shaped by the run's parameters."""
        p = params
        return [
            QdrantCollection("docs", sample=p.sample, seed=p.seed),
            RedisKeys("emb:*", sample=p.sample, seed=p.seed),
            PostgresTable("scores", sample=p.sample, seed=p.seed),
        ]

    def run(self, ctx):
        collections = {c.name for c in ctx.qdrant.get_collections().collections}
        if "docs" not in collections:  # --no-seed, or production had nothing yet
            print("no documents forked: nothing to score")
            return {"docs": 0}
        points, _ = ctx.qdrant.scroll("docs", limit=100_000, with_vectors=True)
        norms = {int(p.id): math.sqrt(sum(x * x for x in p.vector)) for p in points}
        db = ctx.postgres
        db.execute("ALTER TABLE scores ADD COLUMN IF NOT EXISTS norm double precision")
        with db.cursor() as cur:
            cur.executemany(
                "UPDATE scores SET norm = %s WHERE doc_id = %s",
                [(norm, doc_id) for doc_id, norm in norms.items()],
            )
        cached = sum(1 for _ in ctx.redis.scan_iter("emb:*"))
        for step, norm in enumerate(sorted(norms.values())):
            ctx.log_metric("norm", norm, step=step)
        return {
            "docs": len(norms),
            "cached_keys": cached,
            "mean_norm": sum(norms.values()) / len(norms) if norms else 0.0,
        }
