"""Helpers shared by the benchmarks: timing statistics and result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

#: Where results go; tests that run a benchmark point it elsewhere (BENCH_RESULTS).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "max": ordered[-1],
    }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def tool_venv(
    folder: Path, packages: list[str], program: str, given: str | None, option: str
) -> Path:
    """A peer's program from a virtual environment of its own, so that its pins never
    meet omnilab's: ``given`` (the bench's ``option``), or ``folder``'s ``bin/program``,
    the environment made there with ``packages`` on first use."""
    import subprocess
    import sys

    if given:
        path = Path(given)
        if not path.exists():
            sys.exit(f"{option} {given}: no such file")
        return path
    found = folder / "bin" / program
    if not found.exists():
        print(
            f"making {folder} (python -m venv; pip install {' '.join(packages)})...",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run(
            [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", *packages],
            check=True,
        )
    return found


def latency_stats(samples: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of latencies in seconds, in milliseconds."""
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50) * 1000,
        "p90_ms": percentile(ordered, 90) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def write(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
