"""Logs a metric every half second for a few seconds, with no services to start: what a
live display on a terminal has to follow."""

import time

from omnilab import Experiment, Params


class Ticking(Experiment):
    services = []
    gpu = False

    class Params(Params):
        ticks: int = 8
        interval: float = 0.5

    def run(self, ctx):
        for i in range(ctx.params.ticks):
            ctx.log_metric("tick", i)
            time.sleep(ctx.params.interval)
        print("ticking: done", flush=True)
        return {"ticks": ctx.params.ticks}
