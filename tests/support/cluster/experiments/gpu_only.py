"""Needs a GPU: no worker of the cluster has one, so it waits for capacity."""

from omnilab import Experiment


class GpuOnly(Experiment):
    gpu = True
    requires = {"gpu": 1}

    def run(self, ctx):
        return {"gpus": len(ctx.gpus)}
