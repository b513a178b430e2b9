from omnilab import Experiment

class Broken(Experiment)
    pass
