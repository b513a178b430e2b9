"""Params of several types, to check that each invalid field is named."""

from typing import Literal

from pydantic import Field

from omnilab import Experiment, Params


class Typed(Experiment):
    gpu = False

    class Params(Params):
        count: int = Field(default=1, ge=1, le=1000)
        ratio: float = 0.5
        mode: Literal["fast", "exact"] = "fast"
        tags: list[str] = []

    def run(self, ctx):
        return ctx.params.model_dump()
