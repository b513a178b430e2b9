"""The runs that bench/web_pages.py records into omnilab and into MLflow: the same data
for both, made here from a seed so that each side (omnilab's process, and MLflow's own
virtual environment) builds it alike. Standard library only: MLflow's interpreter imports
this file too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

EXPERIMENT = "WebBench"
#: The small runs' metrics, each logged at STEPS steps (the runs table shows the last).
METRICS = ("loss", "accuracy", "lr")
STEPS = 5
#: The big run's metrics: its points are spread evenly over them.
BIG_METRICS = ("loss", "accuracy", "grad_norm", "lr")
OPTIMIZERS = ("adam", "sgd", "adamw", "lion")
MODELS = ("tiny", "small", "base", "large")

Point = tuple[str, int, float, float]  # key, step, value, unix time


@dataclass
class BenchRun:
    """One run as both stores receive it."""

    index: int
    name: str
    params: dict[str, str | int | float]
    tags: list[str]
    created: float  # unix seconds; the big run is the newest
    finished: float
    points: list[Point] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, float]:
        """The last value of each metric: what omnilab's runs table shows as a summary
        column, and what MLflow's shows as a metric column."""
        last: dict[str, tuple[int, float]] = {}
        for key, step, value, _ts in self.points:
            if key not in last or step >= last[key][0]:
                last[key] = (step, value)
        return {key: value for key, (_step, value) in last.items()}


def small_runs(count: int, base: float, seed: int = 7) -> Iterator[BenchRun]:
    """``count`` finished runs, one a minute from ``base``, each with a few params, two
    tags and METRICS x STEPS points."""
    rng = random.Random(seed)
    for i in range(count):
        created = base + 60.0 * i
        lr = rng.choice((1e-4, 3e-4, 1e-3, 3e-3))
        decay = rng.uniform(0.2, 0.9)
        points: list[Point] = []
        for step in range(STEPS):
            ts = created + 5.0 + step
            points.append(("loss", step, 2.0 * math.exp(-decay * step) + rng.uniform(0, 0.05), ts))
            points.append(("accuracy", step, 1 - math.exp(-decay * (step + 1)) / 2, ts))
            points.append(("lr", step, lr * (0.9**step), ts))
        yield BenchRun(
            index=i,
            name=f"sweep-{i:05d}",
            params={
                "lr": lr,
                "batch_size": rng.choice((16, 32, 64, 128)),
                "optimizer": rng.choice(OPTIMIZERS),
                "model": rng.choice(MODELS),
                "seed": i,
            },
            tags=["bench", f"group-{i % 10}"],
            created=created,
            finished=created + 30.0,
            points=points,
        )


def big_run(points: int, after: float) -> BenchRun:
    """One run with ``points`` points over BIG_METRICS, created after the small ones."""
    per_metric = max(1, points // len(BIG_METRICS))
    rows: list[Point] = []
    for k, key in enumerate(BIG_METRICS):
        for step in range(per_metric):
            ts = after + 1.0 + step * 1e-3
            if key == "lr":
                value = 1e-3 * (0.5 + 0.5 * math.cos(math.pi * step / per_metric))
            else:
                value = math.exp(-step / per_metric * (k + 2)) + 0.02 * math.sin(step)
            rows.append((key, step, value, ts))
    return BenchRun(
        index=-1,
        name="long-training",
        params={"lr": 1e-3, "batch_size": 256, "optimizer": "adamw", "model": "large", "seed": 0},
        tags=["bench", "big"],
        created=after,
        finished=after + 1.0 + per_metric * 1e-3,
        points=rows,
    )
