"""Records bench/web_pages.py's runs into MLflow, through MLflow's own client.

Run by MLflow's interpreter (its own virtual environment, never omnilab's):

    BENCH_MLFLOW_DB=postgresql+psycopg2://... python bench/_mlflow_seed.py --runs N
        --points P --base UNIX --artifacts DIR --out ids.json

The client talks to the SQL store directly (``MlflowClient(tracking_uri=<database>)``;
the URL, which holds a password, comes in the environment, not on the command line),
the fastest way MLflow offers to write; each run is ``create_run`` (with its tags),
one ``log_batch`` (params and every metric point) and ``set_terminated``. The big run's
points go in ``log_batch`` calls of 1,000 metrics, MLflow's limit per call. Progress goes
to stderr; the ids, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from _web_data import EXPERIMENT, BenchRun, big_run, small_runs
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

BATCH = 1000  # MLflow's limit of metrics per log_batch


def _ms(unix: float) -> int:
    return int(unix * 1000)


def record(client: MlflowClient, experiment_id: str, run: BenchRun) -> str:
    tags = {tag: "" for tag in run.tags}
    created = client.create_run(
        experiment_id, start_time=_ms(run.created), tags=tags, run_name=run.name
    )
    run_id = created.info.run_id
    params = [Param(k, str(v)) for k, v in run.params.items()]
    metrics = [Metric(k, v, _ms(ts), step) for k, step, v, ts in run.points]
    for first in range(0, max(1, len(metrics)), BATCH):
        client.log_batch(run_id, metrics=metrics[first : first + BATCH], params=params)
        params = []
    client.set_terminated(run_id, status="FINISHED", end_time=_ms(run.finished))
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--points", type=int, required=True)
    parser.add_argument("--base", type=float, required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    client = MlflowClient(tracking_uri=os.environ["BENCH_MLFLOW_DB"])
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=args.artifacts)
    began = time.monotonic()
    done = 0
    # The SQL store opens a session per call: a few threads keep the database busy
    # while Python builds the next call.
    with ThreadPoolExecutor(args.threads) as pool:
        for _run_id in pool.map(
            lambda run: record(client, experiment_id, run), small_runs(args.runs, args.base)
        ):
            done += 1
            if done % 500 == 0 or done == args.runs:
                elapsed = time.monotonic() - began
                print(f"mlflow: {done}/{args.runs} runs, {elapsed:.1f} s", file=sys.stderr)
    big = big_run(args.points, args.base + 60.0 * args.runs)
    big_id = record(client, experiment_id, big)
    seconds = time.monotonic() - began
    print(f"mlflow: big run ({len(big.points)} points), {seconds:.1f} s in all", file=sys.stderr)
    with open(args.out, "w") as fh:
        json.dump({"experiment_id": experiment_id, "big_run_id": big_id, "seconds": seconds}, fh)


if __name__ == "__main__":
    main()
