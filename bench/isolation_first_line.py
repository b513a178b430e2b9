"""Time to the first line of experiment code: container against host isolation.

    omnilab images build experiments     # the image container isolation runs
    python bench/isolation_first_line.py [--rounds 5]

The same experiment (bench/_first_line.py: Redis + PostgreSQL under the docker runtime)
is run with ``omnilab run --isolation host`` and ``--isolation container``, alternating,
after one warm-up run of each, in one working directory (one tracking store). Measured
per run: from just before ``omnilab run`` is launched to the moment the experiment's
first line executes (it writes ``time.time()`` into an artifact; host and container
read the same clock). The stack's own start time is printed beside it: it is the same
in both arms, and container isolation starts its container while the stack starts.

Goal: container isolation adds <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import summary, write

HERE = Path(__file__).resolve().parent
EXPERIMENT = HERE / "_first_line.py"
OMNILAB = Path(sys.executable).parent / "omnilab"


def one_run(isolation: str, cwd: Path) -> dict[str, float]:
    began = time.time()
    done = subprocess.run(
        [
            str(OMNILAB),
            "run",
            str(EXPERIMENT),
            "--runtime",
            "docker",
            "--isolation",
            isolation,
            "--json",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{isolation}: omnilab run failed:\n{done.stderr[-2000:]}")
    run = json.loads(done.stdout[done.stdout.find("{\n") :])
    first = float((Path(run["run_dir"]) / "artifacts" / "first_line").read_text())
    return {
        "first_line_s": first - began,
        "stack_start_s": run["timings"]["stack_start_s"],
        "total_s": run["timings"]["total_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    arms = ("host", "container")
    samples: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        cwd = Path(tmp)
        os.environ.setdefault("OMNILAB_RUNTIME", "docker")
        for arm in arms:  # warm-up: the embedded tracking store, the page cache
            one_run(arm, cwd)
        for _ in range(args.rounds):
            for arm in arms:
                samples[arm].append(one_run(arm, cwd))
    result: dict[str, dict] = {}
    for arm in arms:
        result[arm] = {
            key: summary([s[key] for s in samples[arm]])
            for key in ("first_line_s", "stack_start_s", "total_s")
        }
    host = result["host"]["first_line_s"]["median"]
    container = result["container"]["first_line_s"]["median"]
    result["container_minus_host_s"] = container - host
    result["container_over_host"] = container / host
    for arm in arms:
        r = result[arm]
        print(
            f"{arm:>9}: first line {r['first_line_s']['median']:.2f} s median "
            f"({r['first_line_s']['min']:.2f}-{r['first_line_s']['max']:.2f}), "
            f"stack start {r['stack_start_s']['median']:.2f} s, whole run "
            f"{r['total_s']['median']:.2f} s"
        )
    print(
        f"container isolation adds {container - host:+.2f} s to the first line "
        f"({container / host:.2f}x host; goal: <= +1 s)"
    )
    path = write("isolation_first_line", {"rounds": args.rounds, **result})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
