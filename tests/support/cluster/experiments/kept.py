"""Keys in the run's own Redis, kept on the host that ran it for a later promotion."""

from omnilab import Experiment, Params, Redis
from omnilab.host import host_name
from omnilab.promote import RedisKeys


class Kept(Experiment):
    services = [Redis()]
    gpu = False
    promotes = [RedisKeys("cluster:*")]

    class Params(Params):
        tag: str = "a"

    def run(self, ctx):
        with ctx.redis.pipeline() as pipe:
            for i in range(50):
                pipe.set(f"cluster:{ctx.params.tag}:{i}", host_name())
            pipe.execute()
        return {"host": host_name(), "keys": 50}
