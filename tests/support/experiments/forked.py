"""Experiments that start from production's data (``seeds``) and report what they found."""

from __future__ import annotations

from omnilab import Experiment, Params, Postgres, Qdrant, Redis
from omnilab.promote import PostgresTable, QdrantCollection, RedisKeys


def _found_keys(ctx) -> list[str]:
    return sorted(k.decode() if isinstance(k, bytes) else k for k in ctx.redis.scan_iter())


def _found(ctx) -> dict:
    """What the run's stack holds: the tables' rows, the keys, the collection's points."""
    pg = ctx.postgres
    tables = [
        r[0]
        for r in pg.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = "
            "'public'::regnamespace ORDER BY 1"
        )
    ]
    out: dict = {"tables": {}}
    for table in tables:
        out["tables"][table] = [list(r) for r in pg.execute(f'SELECT * FROM "{table}" ORDER BY 1')]
    r = ctx.redis
    out["keys"] = _found_keys(ctx)
    out["ttls"] = sum(1 for k in r.scan_iter() if r.pttl(k) > 0)
    names = [c.name for c in ctx.qdrant.get_collections().collections]
    out["collections"] = {}
    for name in names:
        points, _ = ctx.qdrant.scroll(name, limit=100_000, with_payload=True)
        out["collections"][name] = sorted([p.id, p.payload] for p in points)
    return out


class Forked(Experiment):
    services = [Qdrant(), Redis(), Postgres()]
    gpu = False
    seeds = [
        PostgresTable("users", where="active"),
        PostgresTable("orders"),
        RedisKeys("emb:*"),
        QdrantCollection("docs"),
    ]

    def run(self, ctx):
        return _found(ctx)


class ForkedByParams(Experiment):
    """``seeds(self, params)``: the parameters choose the rows, keys and points."""

    services = [Qdrant(), Redis(), Postgres()]
    gpu = False

    class Params(Params):
        where: str = "true"
        limit: int | None = None
        sample: float | None = None
        seed: int = 0

    def seeds(self, params):
        p = params
        return [
            PostgresTable("users", where=p.where, limit=p.limit, sample=p.sample, seed=p.seed),
            RedisKeys("emb:*", limit=p.limit, sample=p.sample, seed=p.seed),
            QdrantCollection("docs", limit=p.limit, sample=p.sample, seed=p.seed),
        ]

    def run(self, ctx):
        return _found(ctx)


class ForkedPair(Experiment):
    """Two tables a writer changes together, and keys and points written meanwhile."""

    services = [Qdrant(), Redis(), Postgres()]
    gpu = False
    seeds = [
        PostgresTable("left_side"),
        PostgresTable("right_side"),
        RedisKeys("pair:*"),
        QdrantCollection("pairs"),
    ]

    def run(self, ctx):
        pg = ctx.postgres
        left = pg.execute("SELECT sum(v), count(*) FROM left_side").fetchone()
        right = pg.execute("SELECT sum(v), count(*) FROM right_side").fetchone()
        hashes = [ctx.redis.hgetall(k) for k in ctx.redis.scan_iter("pair:*")]
        points, _ = ctx.qdrant.scroll("pairs", limit=100_000, with_payload=True)
        return {
            "left": [int(left[0]), left[1]],
            "right": [int(right[0]), right[1]],
            "hashes": len(hashes),
            "torn_hashes": sum(1 for h in hashes if h.get(b"a") != h.get(b"b")),
            "points": len(points),
            "torn_points": sum(1 for p in points if p.payload["a"] != p.payload["b"]),
        }


class ForkedDocs(Experiment):
    """Production's ``docs`` alone: its copy runs on the command's main thread."""

    services = [Qdrant()]
    gpu = False
    seeds = [QdrantCollection("docs")]

    def run(self, ctx):
        return {"points": ctx.qdrant.count("docs").count}


class ForkedDocsAndKeys(ForkedDocs):
    """``docs`` and keys: each service's copy in a thread of its own."""

    services = [Qdrant(), Redis()]
    seeds = [QdrantCollection("docs"), RedisKeys("big:*")]


class ForkedBig(Experiment):
    """Many keys: a fork long enough to be interrupted."""

    services = [Redis()]
    gpu = False
    seeds = [RedisKeys("big:*")]

    def run(self, ctx):
        return {"keys": ctx.redis.dbsize()}


class Unseeded(Experiment):
    """Declares nothing: a seed of a service it does not have is bad input."""

    services = [Redis()]
    gpu = False
    seeds = [PostgresTable("users")]

    def run(self, ctx):
        return {}


class ForkedUsers(Experiment):
    """One table: the fork cache's tests (a stack of PostgreSQL alone starts fast)."""

    services = [Postgres()]
    gpu = False
    seeds = [PostgresTable("users")]

    def run(self, ctx):
        rows = ctx.postgres.execute("SELECT id, name FROM users ORDER BY id").fetchall()
        return {"users": [list(r) for r in rows]}


class ForkedAndPromoted(Experiment):
    """Forked from production, changes a known set of rows, keys and points, and promotes
    the same items back: each diff's counts and examples are known exactly."""

    services = [Qdrant(), Redis(), Postgres()]
    gpu = False
    seeds = [PostgresTable("users"), RedisKeys("emb:*"), QdrantCollection("docs")]
    promotes = [PostgresTable("users"), RedisKeys("emb:*"), QdrantCollection("docs")]

    def run(self, ctx):
        from qdrant_client import models

        pg = ctx.postgres
        pg.execute("INSERT INTO users (id, name, active) VALUES (101, 'new a', true)")
        pg.execute("INSERT INTO users (id, name, active) VALUES (102, 'new b', false)")
        pg.execute("UPDATE users SET name = 'changed' WHERE id IN (3, 5, 7)")
        pg.execute("DELETE FROM users WHERE id = 10")
        r = ctx.redis
        r.set("emb:new1", "n1")
        r.set("emb:new2", "n2")
        r.hset("emb:1", "a", "changed")
        r.rpush("emb:2", "more")
        r.delete("emb:3")
        q = ctx.qdrant
        q.upsert(
            "docs",
            [
                models.PointStruct(id=i, vector=[0.5, 1.0, 2.0, i], payload={"kind": "new"})
                for i in (100, 101)
            ],
        )
        q.set_payload("docs", {"kind": "changed"}, points=[4, 5, 6])
        q.delete("docs", points_selector=models.PointIdsList(points=[7, 8]))
        return {}


class ForkedKeys(Experiment):
    """Every key of production's Redis: on the production host that Redis also holds the
    run queue's keys, which are not production's data and must not be copied."""

    services = [Redis()]
    gpu = False
    seeds = [RedisKeys("*")]

    def run(self, ctx):
        return {"keys": _found_keys(ctx)}
