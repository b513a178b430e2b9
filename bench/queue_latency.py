"""Queue-to-start latency: a run of an experiment with no services, queued through the
HTTP API and started by `omnilab worker`, against rq's own no-op task started by a plain
`rq worker`, in the same run, on the same Redis, alternating.

    python bench/queue_latency.py [--runs 1000]

One run at a time, with an idle worker (concurrency 1): the latency is the time from the
moment the client sends the request (POST /v1/runs; for rq, the call to `enqueue`) until
the first line of the experiment's `run()` (for rq, of the task). Each waits for the
previous one to finish and, unless `--back-to-back`, for the worker to be idle again
(rq's own worker state in Redis, the same test for both), so that the figure is the
latency of a queue with a waiting worker, not of a worker still finishing the previous
message. omnilab's figure is also given from the moment the run is recorded (its
`created_at`), and split where the run's record says: request -> recorded (the API),
recorded -> claimed (its `started_at`: message, dequeue, handoff to the slot's spare,
claim), claimed -> first line (the runner).

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
from _common import latency_stats, write
from _servers import Servers, servers
from rq import Queue, Worker

BENCH = Path(__file__).resolve().parent


def _wait_idle(client: redis.Redis, queue: str, back_to_back: bool) -> None:
    """Until every rq worker of ``queue`` says it is idle (it has reaped its horse)."""
    if back_to_back:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = Worker.all(connection=client, queue=Queue(queue, connection=client))
        if workers and all(w.get_state() == "idle" for w in workers):
            return
        time.sleep(0.002)
    raise RuntimeError(f"the worker of {queue} did not become idle")


class RqArm:
    """rq's no-op task on a plain `rq worker`."""

    def __init__(self, redis_url: str, folder: Path, back_to_back: bool) -> None:
        env = {**os.environ, "BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(BENCH)}
        rq_cli = str(Path(sys.executable).parent / "rq")
        self.worker = subprocess.Popen(
            [rq_cli, "worker", "-u", redis_url, "--quiet", "bench-rq"],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis.from_url(redis_url)
        self.queue = Queue("bench-rq", connection=self.client)
        self.back_to_back = back_to_back
        self.samples: dict[str, list[float]] = {"from_request": []}

    def sample(self, keep: bool) -> None:
        began_at = time.time()
        job = self.queue.enqueue("_rq_noop.noop", result_ttl=60)
        _, value = self.client.blpop(["bench:began"], timeout=60) or (None, None)
        if value is None:
            raise RuntimeError("the rq worker did not start the task")
        while job.get_status() not in ("finished", "failed"):
            time.sleep(0.002)
        _wait_idle(self.client, "bench-rq", self.back_to_back)
        if keep:
            self.samples["from_request"].append(float(value) - began_at)

    def close(self) -> None:
        self.worker.terminate()
        self.worker.wait()


class OmnilabArm:
    """A run of `Noop` through `omnilab serve` and `omnilab worker --concurrency 1`."""

    def __init__(self, servers_: Servers, back_to_back: bool) -> None:
        url = servers_.serve(18900 + os.getpid() % 500)
        key = servers_.api_key()
        servers_.spawn("worker", "--concurrency", "1", "--gpus", "none")
        self.client = redis.Redis.from_url(servers_.redis_url)
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        self.back_to_back = back_to_back
        self.samples: dict[str, list[float]] = {
            name: []
            for name in (
                "from_request",
                "from_record",
                "request_to_record",
                "record_to_claim",
                "claim_to_first_line",
            )
        }

    def sample(self, keep: bool) -> None:
        http = self.http
        began_at = time.time()
        response = http.post("/v1/runs", json={"experiment": "Noop"})
        response.raise_for_status()
        run_id = response.json()["id"]
        _, value = self.client.blpop(["bench:began"], timeout=120) or (None, None)
        if value is None:
            raise RuntimeError("the worker did not start the run")
        while (run := http.get(f"/v1/runs/{run_id}").json())["status"] in ("queued", "running"):
            time.sleep(0.002)
        if run["status"] != "succeeded":
            raise RuntimeError(f"run {run_id} {run['status']}: {run['error']}")
        _wait_idle(self.client, "omnilab", self.back_to_back)
        if keep:
            first = float(value)
            created = datetime.fromisoformat(run["created_at"]).timestamp()
            claimed = datetime.fromisoformat(run["started_at"]).timestamp()
            for name, seconds in (
                ("from_request", first - began_at),
                ("from_record", first - created),
                ("request_to_record", created - began_at),
                ("record_to_claim", claimed - created),
                ("claim_to_first_line", first - claimed),
            ):
                self.samples[name].append(seconds)

    def close(self) -> None:
        self.http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument(
        "--back-to-back",
        action="store_true",
        help="send the next message as soon as the previous one has finished, without "
        "waiting for the worker to be idle",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    load = ", ".join(f"{v:.2f}" for v in load_before)
    mode = "back to back" if args.back_to_back else "idle worker"
    print(f"queue-to-start latency, {args.runs} runs each, one at a time, {mode}")
    print(f"  load average before: {load}")
    with servers() as s:
        rq_arm = RqArm(s.redis_url, s.folder, args.back_to_back)
        ours_arm = OmnilabArm(s, args.back_to_back)
        try:
            # The arms alternate (and take turns going first), so that both see the same
            # machine: on a shared one, load comes and goes within a run.
            for i in range(args.runs + 5):  # five warm-up rounds, not counted
                arms = (rq_arm, ours_arm) if i % 2 else (ours_arm, rq_arm)
                for arm in arms:
                    arm.sample(keep=i >= 5)
        finally:
            rq_arm.close()
            ours_arm.close()
    rq_lat, ours = rq_arm.samples["from_request"], ours_arm.samples
    rq_s = latency_stats(rq_lat)
    ours_s, rec_s = latency_stats(ours["from_request"]), latency_stats(ours["from_record"])
    parts = {name: latency_stats(ours[name]) for name in list(ours)[2:]}
    ratio_p99 = ours_s["p99_ms"] / rq_s["p99_ms"]
    ratio_p50 = ours_s["p50_ms"] / rq_s["p50_ms"]
    for label, st in (
        ("rq no-op task (enqueue -> task starts)", rq_s),
        ("omnilab run (POST /v1/runs -> run() starts)", ours_s),
        ("omnilab run (recorded -> run() starts)", rec_s),
        ("  of which: request -> recorded", parts["request_to_record"]),
        ("            recorded -> claimed", parts["record_to_claim"]),
        ("            claimed -> run() starts", parts["claim_to_first_line"]),
    ):
        print(
            f"  {label:47s} p50 {st['p50_ms']:7.1f} ms  p90 {st['p90_ms']:7.1f} ms  "
            f"p99 {st['p99_ms']:7.1f} ms  max {st['max_ms']:7.1f} ms"
        )
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"  load average after: {load}")
    print(f"  ratio omnilab/rq: p50 {ratio_p50:.2f}x, p99 {ratio_p99:.2f}x  (goal p99 <= 2.00x)")
    path = write(
        "queue_latency",
        {
            "runs": args.runs,
            "back_to_back": args.back_to_back,
            "goal_ratio_p99": 2.0,
            "rq_noop": rq_s,
            "omnilab_from_request": ours_s,
            "omnilab_from_record": rec_s,
            "omnilab_parts": parts,
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "ratio_p50": ratio_p50,
            "ratio_p99": ratio_p99,
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
