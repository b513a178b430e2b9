"""An experiment producing a Qdrant collection, Redis keys of every type and a table."""

from __future__ import annotations

import random

from qdrant_client import models

from omnilab import Experiment, Params, Postgres, Qdrant, Redis
from omnilab.promote import PostgresTable, QdrantCollection, RedisKeys


class Promotable(Experiment):
    services = [Qdrant(), Redis(), Postgres()]
    gpu = False
    promotes = [QdrantCollection("docs"), RedisKeys("emb:*"), PostgresTable("scores")]

    class Params(Params):
        n_points: int = 20
        n_keys: int = 30
        n_rows: int = 100
        dim: int = 8
        seed: int = 0
        accept: bool = True
        fail: bool = False
        #: A consumer group on the stream emb:5 (copied only by DUMP/RESTORE).
        groups: bool = False
        #: Columns of types the run creates (an enum and a domain), which production
        #: does not have.
        own_types: bool = False

    def run(self, ctx):
        p = ctx.params
        rng = random.Random(p.seed)
        ctx.qdrant.create_collection(
            "docs", vectors_config=models.VectorParams(size=p.dim, distance=models.Distance.COSINE)
        )
        ctx.qdrant.upsert(
            "docs",
            points=[
                models.PointStruct(
                    id=i,
                    vector=[rng.gauss(0, 1) for _ in range(p.dim)],
                    payload={"title": f"doc {i}", "seed": p.seed, "tags": ["a", str(i % 3)]},
                )
                for i in range(p.n_points)
            ],
        )
        r = ctx.redis
        with r.pipeline() as pipe:
            for i in range(p.n_keys):
                key = f"emb:{i}"
                kind = i % 6
                if kind == 0:
                    pipe.set(key, f"{p.seed}-{i}-" + "x" * (i % 7))
                elif kind == 1:
                    pipe.hset(key, mapping={"a": i, "b": f"v{p.seed}", "c": 1.5})
                elif kind == 2:
                    pipe.rpush(key, p.seed, i, "three")
                elif kind == 3:
                    pipe.sadd(key, "x", "y", str(i + p.seed))
                elif kind == 4:
                    pipe.zadd(key, {"m1": 1.0, f"m{i}": 2.5 + p.seed})
                else:
                    pipe.xadd(key, {"f": str(i), "seed": str(p.seed)}, id=f"{i + 1}-0")
                if i % 2:
                    pipe.expire(key, 3600 + i)
            pipe.execute()
        r.set("other:key", "not promoted")
        if p.groups:
            r.xgroup_create("emb:5", "readers", id="0")
        db = ctx.postgres
        db.execute(
            "CREATE TABLE scores (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE,"
            " score double precision CHECK (score >= 0), payload jsonb, at timestamptz)"
        )
        db.execute("CREATE INDEX scores_score_idx ON scores (score)")
        db.execute(
            "INSERT INTO scores (name, score, payload, at) SELECT 'row ' || g, "
            "(g * 7 %% 1000) / 10.0 + %s, jsonb_build_object('g', g), "
            "timestamptz '2024-01-01' + g * interval '1 minute' "
            "FROM generate_series(1, %s) g",
            (p.seed, p.n_rows),
        )
        if p.own_types:
            db.execute("CREATE TYPE mood AS ENUM ('low', 'high')")
            db.execute("CREATE DOMAIN positive AS double precision CHECK (VALUE >= 0)")
            db.execute(
                "ALTER TABLE scores ADD COLUMN mood mood DEFAULT 'low', "
                "ADD COLUMN weight positive DEFAULT 1"
            )
        if p.fail:
            raise RuntimeError("asked to fail")
        return {"points": p.n_points, "keys": p.n_keys, "rows": p.n_rows, "accept": p.accept}

    def accept(self, summary):
        return bool(summary["accept"])
