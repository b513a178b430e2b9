"""Runs only on a worker labelled zone=a."""

import os
import time

from omnilab import Experiment, Params


class ZoneA(Experiment):
    gpu = False
    requires = {"labels": {"zone": "a"}}

    class Params(Params):
        pause: float = 0.0

    def run(self, ctx):
        time.sleep(ctx.params.pause)
        return {"host": os.environ.get("OMNILAB_HOST")}
