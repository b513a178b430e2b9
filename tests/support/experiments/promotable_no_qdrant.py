"""Redis keys and a table to promote (for the docker runtime, which has no Qdrant image
on a host without a registry)."""

from __future__ import annotations

from omnilab import Experiment, Postgres, Redis
from omnilab.promote import PostgresTable, RedisKeys


class PromotableNoQdrant(Experiment):
    services = [Redis(), Postgres()]
    gpu = False
    promotes = [RedisKeys("emb:*"), PostgresTable("scores")]

    def run(self, ctx):
        with ctx.redis.pipeline() as pipe:
            for i in range(200):
                pipe.set(f"emb:{i}", str(i), ex=3600 if i % 2 else None)
            pipe.hset("emb:meta", mapping={"n": 200})
            pipe.execute()
        ctx.postgres.execute("CREATE TABLE scores (id serial PRIMARY KEY, v text NOT NULL)")
        ctx.postgres.execute(
            "INSERT INTO scores (v) SELECT 'v' || g FROM generate_series(1, 300) g"
        )
        return {"keys": 201, "rows": 300}
