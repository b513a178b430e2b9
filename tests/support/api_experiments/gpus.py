"""What a run sees of GPUs: the CUDA_VISIBLE_DEVICES its worker slot handed it."""

import os
import time

from omnilab import Experiment, Params


class GpuEcho(Experiment):
    gpu = "auto"

    class Params(Params):
        hold: float = 1.0

    def run(self, ctx):
        began = time.time()
        time.sleep(ctx.params.hold)
        return {
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "began": began,
            "ended": time.time(),
        }


class GpuOnly(Experiment):
    gpu = True

    def run(self, ctx):
        return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
