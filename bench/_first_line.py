"""The experiment bench/isolation_first_line.py runs: its first line notes the time."""

import time

from omnilab import Experiment, Postgres, Redis


class FirstLine(Experiment):
    services = [Redis(), Postgres()]
    gpu = False

    def run(self, ctx):
        first = time.time()
        (ctx.artifacts_dir / "first_line").write_text(repr(first))
        ctx.redis.ping()
        ctx.postgres.execute("select 1")
        return {"first_line": first}
