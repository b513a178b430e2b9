"""Queue-to-start latency across hosts against one host, in the same run.

    python bench/cluster_latency.py [--runs 200]

Two arms on one cluster of containers (tests/support/cluster.py: the tests' cluster, on
a private Docker network), sharing its PostgreSQL and Redis hosts, each with a queue of
its own so that neither takes the other's runs:

- one host: ``omnilab serve`` and ``omnilab worker`` on the same host (``solo``);
- across hosts: ``omnilab serve`` on one host (``api``), ``omnilab worker`` on another
  (``worker-a``).

One run at a time, alternating arms, each run an experiment with no services that returns
the moment its ``run()`` began (``time.time()``: containers of one machine share its
clock). The latency is from the moment the client sends ``POST /v1/runs`` until then;
the bench waits for each run to finish before the next. Goal: across hosts p99 <= 1.2x
one host's p99.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from _common import latency_stats, percentile, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.cluster import Cluster, cluster

FINISHED = {"succeeded", "failed", "cancelled"}


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _sample(client: httpx.Client, parts: list[tuple[float, float, float]]) -> float:
    sent = time.time()
    response = client.post("/v1/runs", json={"experiment": "Stamp"})
    response.raise_for_status()
    run_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in FINISHED:
            if run["status"] != "succeeded":
                raise SystemExit(f"run {run_id} {run['status']}: {run.get('error')}")
            t0 = float(run["summary"]["t0"])
            created, started = _epoch(run["created_at"]), _epoch(run["started_at"])
            parts.append((created - sent, started - created, t0 - started))
            return t0 - sent
        time.sleep(0.01)
    raise SystemExit(f"run {run_id} did not finish within 60 s")


def _arms(made: Cluster) -> dict[str, str]:
    made.start_databases()
    made.start_s3()
    solo = made.start_api("solo", OMNILAB_QUEUE="solo")
    made.hosts["solo"].exec_run(
        ["omnilab", "worker", "--concurrency", "1"],
        environment=made.env(OMNILAB_QUEUE="solo"),
        detach=True,
    )
    across = made.start_api("api", OMNILAB_QUEUE="multi")
    made.start_worker("worker-a", "--concurrency", "1", OMNILAB_QUEUE="multi")
    return {"one host": solo, "across hosts": across}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per arm")
    parser.add_argument("--warmup", type=int, default=5, help="runs per arm not counted")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, cluster(uuid.uuid4().hex[:12], Path(tmp)) as made:
        urls = _arms(made)
        clients = {name: made.api(url) for name, url in urls.items()}
        samples: dict[str, list[float]] = {name: [] for name in urls}
        parts: dict[str, list[tuple[float, float, float]]] = {name: [] for name in urls}
        for i in range(args.warmup + args.runs):
            order = list(clients) if i % 2 == 0 else list(reversed(clients))
            for name in order:
                split: list[tuple[float, float, float]] = []
                latency = _sample(clients[name], split)
                if i >= args.warmup:
                    samples[name].append(latency)
                    parts[name] += split
            if (i + 1) % 50 == 0:
                print(f"  {i + 1} runs per arm", file=sys.stderr)
        for c in clients.values():
            c.close()
    stats: dict[str, Any] = {name: latency_stats(values) for name, values in samples.items()}
    for name, split in parts.items():
        stats[name]["parts_p50_ms"] = {
            label: percentile(sorted(p[i] for p in split), 50) * 1000
            for i, label in enumerate(("request->recorded", "recorded->claimed", "claimed->run"))
        }
    ratio = stats["across hosts"]["p99_ms"] / stats["one host"]["p99_ms"]
    print(f"{'arm':<14}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}")
    for name, s in stats.items():
        print(
            f"{name:<14}{s['p50_ms']:>8.1f}ms{s['p90_ms']:>8.1f}ms"
            f"{s['p99_ms']:>8.1f}ms{s['max_ms']:>8.1f}ms"
        )
    for name, s in stats.items():
        split = ", ".join(f"{k} {v:.1f}ms" for k, v in s["parts_p50_ms"].items())
        print(f"  {name} p50 parts: {split}")
    print(f"across hosts / one host, p99: {ratio:.2f}x (goal <= 1.2x)")
    result: dict[str, Any] = {"runs": args.runs, "arms": stats, "p99_ratio": ratio}
    print(f"results: {write('cluster_latency', result)}")


if __name__ == "__main__":
    main()
