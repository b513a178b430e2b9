"""An experiment whose resources do not parse."""

from omnilab import Experiment, Redis, Resources


class BadResources(Experiment):
    services = [Redis()]
    resources = Resources(memory="lots")

    def run(self, ctx):
        return {}
