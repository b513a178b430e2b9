"""How long production readers can see a promotion half done (old and new items mixed).

A promotion of three items (a Qdrant collection, Redis keys, a PostgreSQL table) switches
them one after the other once every item is staged and verified (its commit). Readers see
a mix of old and new items:

- ``window``: between the first switch and the last, in every promotion. Each item records
  when it was switched, counted from the commit (``seconds["switched"]``); the window is
  the last minus the first. The peer is the whole promotion of the same run (plan, copy,
  verification, switches), same round: the window as a fraction of it.
- ``recover``: after ``omnilab promote`` is killed with SIGKILL just after its first
  switch (PostgreSQL), until ``omnilab promotions recover``, started at once, has rolled
  it forward: its wall time, process start included.
- ``api``: the same kill with ``omnilab serve`` running (default
  ``OMNILAB_RECONCILE_INTERVAL``, 5 s) and nobody asking: from the kill to the moment the
  record says it was rolled forward (``finished_at``).

The run is the tests' promotable experiment (1,000 points, 10,000 rows, ``--keys`` Redis
keys of six types); production is a Redis and a PostgreSQL started by omnilab and a Qdrant
in local mode on tmpfs, as in the tests.

    python bench/promote_window.py [--keys 1000,100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from _common import summary, write
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "tests" / "support" / "experiments" / "promotable.py"
OMNILAB = Path(sys.executable).parent / "omnilab"


def setup(folder: Path) -> Any:
    """Production (Redis, PostgreSQL, Qdrant local mode) and a tracking database."""
    from omnilab import Postgres, Redis, Stack
    from omnilab.progress import QuietReporter

    os.chdir(folder)
    os.environ["OMNILAB_STATE_DIR"] = str(folder / "state")
    os.environ["OMNILAB_RUNTIME"] = "local"
    stack = Stack(
        Redis(decode_responses=False),
        Postgres(database="omnimind"),
        runtime="local",
        reporter=QuietReporter(),
    )
    stack.start()
    env = stack.env
    with psycopg.connect(env["POSTGRES_URL"], autocommit=True) as conn:
        conn.execute("CREATE DATABASE tracking")
    tracking = make_conninfo(**{**conninfo_to_dict(env["POSTGRES_URL"]), "dbname": "tracking"})
    qdrant = Path(tempfile.mkdtemp(prefix="omnilab-window-", dir="/dev/shm"))
    os.environ.update(
        REDIS_URL=env["REDIS_URL"],
        POSTGRES_URL=env["POSTGRES_URL"],
        QDRANT_URL=f"file://{qdrant / 'production'}",
        OMNILAB_TRACKING_URL=tracking,
    )
    return stack, qdrant


def make_run(keys: int, seed: int) -> str:
    import omnilab
    from omnilab.progress import QuietReporter

    params = {"n_keys": keys, "n_points": 1000, "n_rows": 10_000, "seed": seed}
    run = omnilab.run(str(EXPERIMENT), params=params, reporter=QuietReporter())
    assert run.ok, run.error
    return run.id


def window(run_id: str) -> dict[str, float]:
    from omnilab.progress import QuietReporter
    from omnilab.promote import promote

    result = promote(run_id, on_conflict="replace", reporter=QuietReporter())
    assert result.status == "succeeded", result
    switched = sorted(i.seconds["switched"] for i in result.items)
    by_item = {i.plan.service: i.seconds["switch"] for i in result.items}
    return {
        "window_s": switched[-1] - switched[0],
        "commit_to_last_switch_s": switched[-1],
        "promotion_s": result.seconds,
        **{f"switch_{k}_s": v for k, v in by_item.items()},
    }


def kill_after_first_switch(run_id: str) -> tuple[str, float]:
    """``omnilab promote`` killed with SIGKILL just after its PostgreSQL switch; returns
    its promotion's short id and the wall-clock time of the kill."""
    proc = subprocess.Popen(
        [str(OMNILAB), "promote", run_id, "--on-conflict", "replace"],
        env={**os.environ, "OMNILAB_PROMOTE_PAUSE_AT": "switched:postgres"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    short = ""
    for line in proc.stderr:
        words = line.split()
        if words[:1] == ["promotion"] and words[2:3] == ["of"]:
            short = words[1]
        if line.startswith("promotion paused at "):
            break
    proc.send_signal(signal.SIGKILL)
    killed = time.time()
    proc.wait()
    return short, killed


def record(run_id: str, short: str) -> Any:
    import omnilab

    [found] = [p for p in omnilab.Run.load(run_id).promotions if p.id.startswith(short)]
    return found


def by_recover(run_id: str) -> dict[str, float]:
    short, killed = kill_after_first_switch(run_id)
    began = time.perf_counter()
    out = subprocess.run(
        [str(OMNILAB), "promotions", "recover"], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - began
    assert out.returncode == 0, out.stderr
    done = record(run_id, short)
    assert done.status == "succeeded" and done.finished_at, done
    return {
        "recover_wall_s": wall,
        "roll_forward_s": rolled_forward_in(done),
        "mixed_s": done.finished_at.timestamp() - killed,
    }


def rolled_forward_in(done: Any) -> float:
    """The time the roll forward itself took, as the record says ("... in 0.42s: ...")."""
    found = re.search(r" in ([0-9.]+)s: switched", done.recovered or "")
    assert found, done.recovered
    return float(found.group(1))


def by_api(run_id: str) -> dict[str, float]:
    short, killed = kill_after_first_switch(run_id)
    deadline = time.monotonic() + 60
    while (done := record(run_id, short)).status != "succeeded":
        assert time.monotonic() < deadline, "the API did not roll it forward"
        time.sleep(0.05)
    assert done.finished_at
    mixed = done.finished_at.timestamp() - killed
    return {"roll_forward_s": rolled_forward_in(done), "mixed_s": mixed}


def serve(folder: Path) -> subprocess.Popen[bytes]:
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [str(OMNILAB), "serve", "--port", str(port), "--log-level", "warning"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("omnilab serve did not start")


def med(samples: list[dict[str, float]]) -> dict[str, Any]:
    return {k: summary([s[k] for s in samples]) for k in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="1000,100000", help="Redis keys per run, by size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()  # the figures depend on it where cores are shared
    folder = Path(tempfile.mkdtemp(prefix="omnilab-window-"))
    stack, qdrant = setup(folder)
    results: dict[str, Any] = {}
    try:
        for keys in (int(k) for k in args.keys.split(",")):
            samples: dict[str, list[dict[str, float]]] = {"window": [], "recover": [], "api": []}
            for i in range(args.rounds):
                w = window(make_run(keys, 3 * i))
                r = by_recover(make_run(keys, 3 * i + 1))
                samples["window"].append(w)
                samples["recover"].append(r)
                print(
                    f"  {keys:>7,} keys, round {i + 1}: window {w['window_s'] * 1000:.1f} ms "
                    f"of a {w['promotion_s']:.2f}s promotion; killed, then recover: mixed "
                    f"{r['mixed_s']:.2f}s ({r['recover_wall_s']:.2f}s wall, roll forward "
                    f"{r['roll_forward_s']:.2f}s)",
                    flush=True,
                )
            api = serve(folder)  # only now: it would race `omnilab promotions recover`
            try:
                for i in range(args.rounds):
                    a = by_api(make_run(keys, 3 * i + 2))
                    samples["api"].append(a)
                    print(
                        f"  {keys:>7,} keys, round {i + 1}: killed, API running: mixed "
                        f"{a['mixed_s']:.2f}s (roll forward {a['roll_forward_s']:.2f}s)",
                        flush=True,
                    )
            finally:
                api.send_signal(signal.SIGTERM)
                api.wait(timeout=30)
            summaries = {k: med(v) for k, v in samples.items()}
            ratio = statistics.median(s["window_s"] / s["promotion_s"] for s in samples["window"])
            results[str(keys)] = {**summaries, "window_over_promotion": ratio, "samples": samples}
    finally:
        stack.close()
        shutil.rmtree(qdrant, ignore_errors=True)
    path = write(
        "promote_window",
        {
            "rounds": args.rounds,
            "reconcile_interval_s": 5.0,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "sizes": results,
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
