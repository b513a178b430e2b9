"""Uses Redis and PostgreSQL, logs metrics, prints, writes an artifact, returns a summary:
everything a run records, to compare host and container isolation."""

import sys

from omnilab import Experiment, Params, Postgres, Redis


class Recorded(Experiment):
    services = [Redis(), Postgres()]
    gpu = False

    class Params(Params):
        n: int = 5

    def run(self, ctx):
        import os

        for i in range(ctx.params.n):
            ctx.redis.set(f"k{i}", i)
            ctx.log_metric("written", i + 1)
        ctx.log_metric("loss", 0.5, step=7)
        db = ctx.postgres
        db.execute("CREATE TABLE t (i int)")
        db.execute("INSERT INTO t SELECT generate_series(1, %s)", (ctx.params.n,))
        print(f"wrote {ctx.params.n} keys")
        print("to stderr", file=sys.stderr)
        (ctx.artifacts_dir / "out.txt").write_text(f"{ctx.redis.dbsize()}\n")
        return {
            "keys": ctx.redis.dbsize(),
            "rows": db.execute("SELECT count(*) FROM t").fetchone()[0],
            "environment": os.environ.get("ENVIRONMENT", "unset"),
        }
