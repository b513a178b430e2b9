"""Experiments with resource bounds: ones that outgrow them, one that names a container
it does not have."""

from omnilab import Experiment, Postgres, Redis, Resources


class FillPostgres(Experiment):
    """Writes about 200 MiB into a PostgreSQL whose data may take 96 MiB."""

    services = [Postgres()]
    gpu = False
    resources = Resources(per_service={"postgres": Resources(disk="96m")})

    def run(self, ctx):
        db = ctx.postgres
        db.execute("CREATE TABLE filler (pad text)")
        for _ in range(20):  # 1 KiB rows (below TOAST's threshold: not compressed)
            db.execute("INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 10000)")
        return {"rows": db.execute("SELECT count(*) FROM filler").fetchone()[0]}


class FillRedis(Experiment):
    """Writes about 200 MiB into a Redis that may hold 64 MiB, and swallows the error it
    gets: the run fails all the same, for its bound."""

    services = [Redis()]
    gpu = False
    resources = Resources(memory="1g", per_service={"redis": Resources(memory="64m")})

    def run(self, ctx):
        chunk = "x" * (1 << 20)
        written = 0
        try:
            for i in range(200):
                ctx.redis.set(f"k{i}", chunk)
                written += 1
        except Exception as exc:  # the connection drops when the server is killed
            return {"written": written, "error": type(exc).__name__}
        return {"written": written}


class Misnamed(Experiment):
    services = [Redis()]
    gpu = False
    resources = Resources(per_service={"postgress": Resources(memory="1g")})

    def run(self, ctx):
        return {}
