"""A run with a stack of its own (a local Redis) that lasts `seconds`: long enough for
its host to be killed or cut off in the middle."""

import time

from omnilab import Experiment, Params, Redis
from omnilab.host import host_name


class Slow(Experiment):
    services = [Redis()]
    gpu = False

    class Params(Params):
        seconds: float = 8.0

    def run(self, ctx):
        ctx.redis.set("started", host_name())
        print(f"started on {host_name()}", flush=True)
        time.sleep(ctx.params.seconds)
        print(f"done on {host_name()}", flush=True)
        return {"host": host_name()}
