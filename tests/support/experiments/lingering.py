"""Leaves a non-daemon thread running when run() returns: the run must end anyway."""

from __future__ import annotations

import threading
import time

from omnilab import Experiment, Redis


class Lingering(Experiment):
    services = [Redis()]
    gpu = False

    def run(self, ctx):
        threading.Thread(target=time.sleep, args=(120,), name="forgotten").start()
        return {"left": "a thread"}
