"""A real stack (Redis, PostgreSQL) that stays up while the experiment sleeps."""

import time

from omnilab import Experiment, Params, Postgres, Redis


class Stacked(Experiment):
    services = [Redis(), Postgres()]
    gpu = False

    class Params(Params):
        seconds: float = 60.0

    def run(self, ctx):
        ctx.redis.set("k", "v")
        ctx.postgres.execute("select 1")
        print("sleeping", flush=True)
        time.sleep(ctx.params.seconds)
        return {"slept": ctx.params.seconds}
