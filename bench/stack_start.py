"""Stack start time, local runtime: Redis + PostgreSQL + Qdrant started in parallel
(omnilab's default) against the same services started one after another.

    python bench/stack_start.py [--rounds 7]

Both arms use the same code path (``Stack(parallel=False)`` is the sequential one),
alternating, after a warm-up round each. The figure is the time from ``start()`` until
every service answers, measured two ways:

- cold: each start in a fresh Python process, as ``omnilab run`` experiences it
  (the client libraries load during the start);
- warm: repeated starts in one process, as in a notebook.

Goal: parallel <= 0.6x sequential.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _common import summary, write

ONE_START = """
import json, time
from omnilab import Postgres, Qdrant, Redis, Stack
from omnilab.progress import QuietReporter
stack = Stack(Redis(), Postgres(), Qdrant(), runtime="local", parallel={parallel},
              reporter=QuietReporter())
stack.prepare()
began = time.perf_counter()
stack.start()
elapsed = time.perf_counter() - began
ready = {{n: r.ready_seconds for n, r in stack.services.items()}}
stack.close()
print(json.dumps({{"elapsed": elapsed, "ready": ready}}))
"""


def start_cold(parallel: bool) -> tuple[float, dict[str, float]]:
    out = subprocess.run(
        [sys.executable, "-c", ONE_START.format(parallel=parallel)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return data["elapsed"], data["ready"]


def start_warm(parallel: bool) -> tuple[float, dict[str, float]]:
    from omnilab import Postgres, Qdrant, Redis, Stack
    from omnilab.progress import QuietReporter

    stack = Stack(
        Redis(), Postgres(), Qdrant(), runtime="local", parallel=parallel, reporter=QuietReporter()
    )
    stack.prepare()  # binary discovery is not part of "start"
    began = time.perf_counter()
    stack.start()
    elapsed = time.perf_counter() - began
    ready = {n: r.ready_seconds for n, r in stack.services.items()}
    stack.close()
    return elapsed, ready


def measure(start, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    start(True), start(False)  # warm-up: page cache, first imports
    samples: dict[str, list[float]] = {"parallel": [], "sequential": []}
    alone: dict[str, list[float]] = {}
    for _ in range(rounds):
        for mode in ("parallel", "sequential"):
            elapsed, ready = start(mode == "parallel")
            samples[mode].append(elapsed)
            if mode == "sequential":
                for name, seconds in ready.items():
                    alone.setdefault(name, []).append(seconds)
    par, seq = summary(samples["parallel"]), summary(samples["sequential"])
    return {
        "parallel_s": par,
        "sequential_s": seq,
        "ratio": par["median"] / seq["median"],
        "service_ready_s_when_sequential": {n: summary(s) for n, s in sorted(alone.items())},
    }


def report(label: str, result: dict) -> None:  # type: ignore[type-arg]
    par, seq = result["parallel_s"], result["sequential_s"]
    print(f"  {label}:")
    print(
        f"    parallel   median {par['median']:.3f}s  (min {par['min']:.3f}, max {par['max']:.3f})"
    )
    print(
        f"    sequential median {seq['median']:.3f}s  (min {seq['min']:.3f}, max {seq['max']:.3f})"
    )
    for name, s in result["service_ready_s_when_sequential"].items():
        print(f"      {name:9s} alone: median {s['median']:.3f}s")
    print(f"    ratio parallel/sequential: {result['ratio']:.2f}x  (goal <= 0.60x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))
    print(f"stack start, Redis + PostgreSQL + Qdrant, local runtime, {args.rounds} rounds")
    cold = measure(start_cold, args.rounds)
    report("cold (fresh process per start, as `omnilab run`)", cold)
    warm = measure(start_warm, args.rounds)
    report("warm (same process, as a notebook)", warm)
    path = write(
        "stack_start", {"rounds": args.rounds, "goal_ratio": 0.6, "cold": cold, "warm": warm}
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
