"""Says when its run() began (the hosts share one clock: containers of one machine)."""

import time

from omnilab import Experiment
from omnilab.host import host_name


class Stamp(Experiment):
    gpu = False

    def run(self, ctx):
        return {"t0": time.time(), "host": host_name()}
