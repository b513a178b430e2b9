"""An experiment that raises in its own code, after using its stack."""

from omnilab import Experiment, Redis


def divide(x):
    return 1 / x


class Boom(Experiment):
    services = [Redis()]
    gpu = False

    def run(self, ctx):
        ctx.redis.set("before", "boom")
        ctx.log_metric("reached", 1)
        return {"never": divide(0)}
