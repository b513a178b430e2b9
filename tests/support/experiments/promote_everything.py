"""An experiment that promotes every key of its Redis (pattern ``*``)."""

from __future__ import annotations

from omnilab import Experiment, Redis
from omnilab.promote import RedisKeys


class PromoteEverything(Experiment):
    services = [Redis()]
    gpu = False
    promotes = [RedisKeys("*")]

    def run(self, ctx):
        ctx.redis.set("a", "1")
        ctx.redis.rpush("b", "x", "y")
        return {"keys": 2}
