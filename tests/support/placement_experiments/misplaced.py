"""A typo in `requires`: the file is left out of the catalog, with the reason."""

from omnilab import Experiment


class Misplaced(Experiment):
    requires = {"gpus": 1}

    def run(self, ctx):
        return {}
