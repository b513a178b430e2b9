"""A toy training loop for the docs' screenshots: curves that differ with the params."""

import json
import math
import random
from typing import Literal

from pydantic import Field

from omnilab import Experiment, Params


class Train(Experiment):
    """Fit a toy model: the loss falls faster with a larger learning rate."""

    gpu = False

    class Params(Params):
        lr: float = Field(default=0.01, gt=0, le=1, description="learning rate")
        epochs: int = Field(default=30, ge=1, le=500, description="passes over the data")
        optimizer: Literal["adam", "sgd"] = "adam"
        augment: bool = False

    def run(self, ctx):
        p = ctx.params
        rng = random.Random(p.epochs)
        rate = p.lr * (30 if p.optimizer == "adam" else 10)
        floor = 0.08 if p.augment else 0.15
        for epoch in range(p.epochs):
            loss = math.exp(-rate * epoch) + floor + rng.uniform(0, 0.04)
            accuracy = 1 - loss / 2
            ctx.log_metrics({"loss": loss, "accuracy": accuracy}, step=epoch)
            print(f"epoch {epoch:3d}  loss {loss:.4f}  accuracy {accuracy:.4f}", flush=True)
        (ctx.artifacts_dir / "model.json").write_text(json.dumps({"lr": p.lr, "loss": loss}))
        return {"loss": round(loss, 4), "accuracy": round(accuracy, 4)}
