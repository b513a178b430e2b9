"""An experiment that forgot its run(): refused before its stack starts."""

from omnilab import Experiment, Redis


class Forgetful(Experiment):
    services = [Redis()]
    gpu = False
