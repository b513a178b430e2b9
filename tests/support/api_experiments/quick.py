"""No services: prints numbered lines, logs a metric per line."""

import time

from omnilab import Experiment, Params


class Quick(Experiment):
    """Print `n` lines, `pause` seconds apart."""

    gpu = False

    class Params(Params):
        n: int = 3
        pause: float = 0.0
        label: str = "line"

    def run(self, ctx):
        for i in range(ctx.params.n):
            print(f"{ctx.params.label} {i}", flush=True)
            ctx.log_metric("i", i)
            time.sleep(ctx.params.pause)
        return {"n": ctx.params.n, "pid": __import__("os").getpid()}
