"""Placed only on a worker with a GPU; runs on whatever the runtime then gives it
("auto": none on a host without a driver, so the tests can run it anywhere)."""

import os

from omnilab import Experiment


class NeedsGpu(Experiment):
    requires = {"gpu": 1}

    def run(self, ctx):
        return {
            "host": os.environ.get("OMNILAB_HOST"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
