"""Requires nothing: any worker takes it from the shared queue."""

import os
import time

from omnilab import Experiment, Params


class Anywhere(Experiment):
    gpu = False

    class Params(Params):
        pause: float = 0.0

    def run(self, ctx):
        time.sleep(ctx.params.pause)
        return {"host": os.environ.get("OMNILAB_HOST")}
