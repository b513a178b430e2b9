"""Queue-to-start latency: a run of an experiment with no services, queued through the
HTTP API and started by `omnilab worker`, against rq's own no-op task started by a plain
`rq worker`, in the same run, on the same Redis.

    python bench/queue_latency.py [--runs 1000]

One run at a time, with an idle worker (concurrency 1, both forking a work horse per
message): the latency is the time from the moment the client sends the request (POST
/v1/runs; for rq, the call to `enqueue`) until the first line of the experiment's `run()`
(for rq, of the task). Each waits for the previous one to finish completely. omnilab's
figure is also given from the moment the run is recorded (its `created_at`).

Goal: omnilab's p99 <= 2x rq's p99.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import redis
from _common import percentile, write
from _servers import servers
from rq import Queue

BENCH = Path(__file__).resolve().parent


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50) * 1000,
        "p90_ms": percentile(ordered, 90) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def measure_rq(redis_url: str, runs: int, folder: Path) -> list[float]:
    env = {**os.environ, "BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(BENCH)}
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "rq"), "worker", "-u", redis_url, "--quiet", "bench-rq"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis.from_url(redis_url)
    queue = Queue("bench-rq", connection=client)
    latencies = []
    try:
        for i in range(runs + 5):  # five warm-up tasks, not counted
            began_at = time.time()
            job = queue.enqueue("_rq_noop.noop", result_ttl=60)
            _, value = client.blpop(["bench:began"], timeout=60) or (None, None)
            if value is None:
                raise RuntimeError("the rq worker did not start the task")
            while job.get_status() not in ("finished", "failed"):
                time.sleep(0.002)
            if i >= 5:
                latencies.append(float(value) - began_at)
    finally:
        worker.terminate()
        worker.wait()
    return latencies


def measure_omnilab(servers_, runs: int) -> tuple[list[float], list[float]]:
    url = servers_.serve(18900 + os.getpid() % 500)
    key = servers_.api_key()
    servers_.spawn("worker", "--concurrency", "1", "--gpus", "none")
    client = redis.Redis.from_url(servers_.redis_url)
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    from_request, from_record = [], []
    for i in range(runs + 5):
        began_at = time.time()
        response = http.post("/v1/runs", json={"experiment": "Noop"})
        response.raise_for_status()
        run_id = response.json()["id"]
        _, value = client.blpop(["bench:began"], timeout=120) or (None, None)
        if value is None:
            raise RuntimeError("the worker did not start the run")
        while (run := http.get(f"/v1/runs/{run_id}").json())["status"] in ("queued", "running"):
            time.sleep(0.002)
        if run["status"] != "succeeded":
            raise RuntimeError(f"run {run_id} {run['status']}: {run['error']}")
        if i >= 5:
            created = datetime.fromisoformat(run["created_at"]).timestamp()
            from_request.append(float(value) - began_at)
            from_record.append(float(value) - created)
    http.close()
    return from_request, from_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    print(f"queue-to-start latency, {args.runs} runs each, one at a time, idle worker")
    with servers() as s:
        rq_lat = measure_rq(s.redis_url, args.runs, s.folder)
        ours, ours_record = measure_omnilab(s, args.runs)
    rq_s, ours_s, rec_s = _stats(rq_lat), _stats(ours), _stats(ours_record)
    ratio_p99 = ours_s["p99_ms"] / rq_s["p99_ms"]
    ratio_p50 = ours_s["p50_ms"] / rq_s["p50_ms"]
    for label, st in (
        ("rq no-op task (enqueue -> task starts)", rq_s),
        ("omnilab run (POST /v1/runs -> run() starts)", ours_s),
        ("omnilab run (recorded -> run() starts)", rec_s),
    ):
        print(
            f"  {label:47s} p50 {st['p50_ms']:7.1f} ms  p90 {st['p90_ms']:7.1f} ms  "
            f"p99 {st['p99_ms']:7.1f} ms  max {st['max_ms']:7.1f} ms"
        )
    print(f"  ratio omnilab/rq: p50 {ratio_p50:.2f}x, p99 {ratio_p99:.2f}x  (goal p99 <= 2.00x)")
    path = write(
        "queue_latency",
        {
            "runs": args.runs,
            "goal_ratio_p99": 2.0,
            "rq_noop": rq_s,
            "omnilab_from_request": ours_s,
            "omnilab_from_record": rec_s,
            "ratio_p50": ratio_p50,
            "ratio_p99": ratio_p99,
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
