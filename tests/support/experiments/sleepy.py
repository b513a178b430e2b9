"""Waits until interrupted, with Redis and PostgreSQL running."""

import time

from omnilab import Experiment, Postgres, Redis


class Sleepy(Experiment):
    services = [Redis(), Postgres()]
    gpu = False

    def run(self, ctx):
        print("sleeping", flush=True)
        time.sleep(120)
        return {"woke": True}
