"""Redis and PostgreSQL: writes its run id to each and reports what it found there."""

from omnilab import Experiment, Postgres, Redis


class Pair(Experiment):
    services = [Redis(), Postgres()]
    gpu = "auto"

    def run(self, ctx):
        keys_before = ctx.redis.dbsize()
        ctx.redis.set("owner", ctx.run_id)
        db = ctx.postgres
        tables_before = db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
        db.execute("CREATE TABLE owner (run text)")
        db.execute("INSERT INTO owner VALUES (%s)", (ctx.run_id,))
        return {
            "keys_before": keys_before,
            "tables_before": tables_before,
            "redis_owner": ctx.redis.get("owner"),
            "postgres_owner": db.execute("SELECT run FROM owner").fetchone()[0],
            "ports": {n: ctx.stack.endpoint(n).port for n in ("redis", "postgres")},
        }
