"""Float parameters: finite unless a model says otherwise."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ConfigDict

from omnilab import Experiment, Params, Redis


class Timed(Experiment):
    """The default: NaN and infinities are refused, wherever they hide."""

    services = [Redis()]
    gpu = False

    class Params(Params):
        seconds: float = 0.1
        weights: dict[str, float] = {}
        extra: Any = None

    def run(self, ctx):
        return {"seconds": ctx.params.seconds}


class Unbounded(Experiment):
    """A model that takes infinities on purpose: no limit means an infinite one."""

    gpu = False

    class Params(Params):
        model_config = ConfigDict(allow_inf_nan=True)
        limit: float = 1.0

    def run(self, ctx):
        return {"limit_is_finite": math.isfinite(ctx.params.limit)}
