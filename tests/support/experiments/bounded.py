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


class ForkPostgres(Experiment):
    """Opens more connections than its PostgreSQL may have processes (a backend process
    each), and swallows the refusals: the run fails all the same, for its bound."""

    services = [Postgres()]
    gpu = False
    resources = Resources(per_service={"postgres": Resources(pids=24)})

    def run(self, ctx):
        import psycopg

        url = ctx.env["POSTGRES_URL"]
        held, refused = [], 0
        for _ in range(40):
            try:
                held.append(psycopg.connect(url, connect_timeout=5))
            except psycopg.OperationalError:
                refused += 1
        for conn in held:
            conn.close()
        return {"held": len(held), "refused": refused}


class ForkBomb(Experiment):
    """Starts more processes than its own container may hold (with isolation
    "container"), and swallows the refusals."""

    gpu = False
    resources = Resources(per_service={"experiment": Resources(pids=48)})

    def run(self, ctx):
        import subprocess

        children, refused = [], 0
        for _ in range(80):
            try:
                children.append(subprocess.Popen(["sleep", "30"]))
            except OSError:
                refused += 1
        for child in children:
            child.kill()
            child.wait()
        return {"started": len(children), "refused": refused}


class GreedyChild(Experiment):
    """A child process of the experiment outgrows its container's memory and is killed;
    the experiment swallows that: the run fails all the same, for its bound."""

    gpu = False
    resources = Resources(per_service={"experiment": Resources(memory="256m")})

    def run(self, ctx):
        import subprocess
        import sys

        grow = "x = bytearray(1 << 30); print(len(x))"
        code = subprocess.run([sys.executable, "-c", grow], check=False).returncode
        return {"child": code}
