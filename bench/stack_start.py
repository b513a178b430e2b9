"""Stack start time, local runtime: Redis + PostgreSQL + Qdrant started in parallel
(omnilab's default) against the same services started one after another.

    python bench/stack_start.py [--rounds 7]

Both arms use the same code path (the sequential one is ``SequentialStack`` below: the
same start, with each service waiting for the one before it to answer), alternating,
after a warm-up round each. The figure is the time from ``start()`` until every service
answers, measured two ways:

- cold: each start in a fresh Python process, as ``omnilab run`` experiences it
  (the client libraries load during the start);
- warm: repeated starts in one process, as in a notebook.

Goal: parallel <= 0.6x sequential.

Teardown (``close()`` until every server has exited and the stack's folder is gone) is
measured on the same stacks: the parallel arm's is omnilab's (the data is thrown away, so
each server gets its ``discard_signal``: no clean shutdown to wait for); the sequential
arm's is the baseline, each server shut down cleanly with its ``stop_signal`` (what
omnilab does when the data is kept), all at once. Goal: omnilab's <= 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, cast

from _common import summary, write

from omnilab import Postgres, Qdrant, Redis, Stack
from omnilab.progress import QuietReporter
from omnilab.runtimes.base import RunningService, Runtime
from omnilab.runtimes.state import StackState


class _OneAtATime:
    """A runtime whose service starts wait for each other: a lock around the real one's."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._lock = threading.Lock()

    def start_service(self, *args: Any, **kwargs: Any) -> RunningService:
        with self._lock:
            return self._runtime.start_service(*args, **kwargs)


class SequentialStack(Stack):
    """The baseline: the services started one after another, by omnilab's own start."""

    def _start_services(self, runtime: Runtime, state: StackState) -> None:
        super()._start_services(cast(Runtime, _OneAtATime(runtime)), state)


Sample = tuple[float, dict[str, float], float]  # start, each service's ready, teardown


def start_once(parallel: bool) -> Sample:
    kind = Stack if parallel else SequentialStack
    stack = kind(Redis(), Postgres(), Qdrant(), runtime="local", reporter=QuietReporter())
    stack.prepare()  # binary discovery is not part of "start"
    began = time.perf_counter()
    stack.start()
    elapsed = time.perf_counter() - began
    ready = {n: r.ready_seconds for n, r in stack.services.items()}
    if not parallel:
        # The baseline's teardown: every server's clean shutdown, as for kept data.
        assert stack._state is not None
        for handle in stack._state.services.values():
            handle["discard_signal"] = handle.get("stop_signal")
    began = time.perf_counter()
    stack.close()
    return elapsed, ready, time.perf_counter() - began


def start_cold(parallel: bool) -> Sample:
    mode = "parallel" if parallel else "sequential"
    out = subprocess.run(
        [sys.executable, __file__, "--one", mode],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return data["elapsed"], data["ready"], data["teardown"]


def start_warm(parallel: bool) -> Sample:
    return start_once(parallel)


def measure(start, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    start(True), start(False)  # warm-up: page cache, first imports
    samples: dict[str, list[float]] = {"parallel": [], "sequential": []}
    teardowns: dict[str, list[float]] = {"parallel": [], "sequential": []}
    alone: dict[str, list[float]] = {}
    for _ in range(rounds):
        for mode in ("parallel", "sequential"):
            elapsed, ready, teardown = start(mode == "parallel")
            samples[mode].append(elapsed)
            teardowns[mode].append(teardown)
            if mode == "sequential":
                for name, seconds in ready.items():
                    alone.setdefault(name, []).append(seconds)
    par, seq = summary(samples["parallel"]), summary(samples["sequential"])
    return {
        "parallel_s": par,
        "sequential_s": seq,
        "ratio": par["median"] / seq["median"],
        "service_ready_s_when_sequential": {n: summary(s) for n, s in sorted(alone.items())},
        "teardown_s": summary(teardowns["parallel"]),
        "teardown_clean_shutdown_s": summary(teardowns["sequential"]),
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
    down, clean = result["teardown_s"], result["teardown_clean_shutdown_s"]
    print(
        f"    teardown   median {down['median']:.3f}s  (min {down['min']:.3f}, max "
        f"{down['max']:.3f}; goal <= 0.50s); clean shutdown median {clean['median']:.3f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    # One start in this process, its figures as JSON: the cold arm's fresh process.
    parser.add_argument("--one", choices=["parallel", "sequential"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        elapsed, ready, teardown = start_once(args.one == "parallel")
        print(json.dumps({"elapsed": elapsed, "ready": ready, "teardown": teardown}))
        return
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))
    print(f"stack start, Redis + PostgreSQL + Qdrant, local runtime, {args.rounds} rounds")
    cold = measure(start_cold, args.rounds)
    report("cold (fresh process per start, as `omnilab run`)", cold)
    warm = measure(start_warm, args.rounds)
    report("warm (same process, as a notebook)", warm)
    path = write(
        "stack_start",
        {
            "rounds": args.rounds,
            "goal_ratio": 0.6,
            "goal_teardown_s": 0.5,
            "cold": cold,
            "warm": warm,
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
