"""The web UI's two heaviest pages against MLflow's serving the same runs, same run:
the runs page over 10,000 runs, and the page of a run with 100,000 metric points.

    python bench/web_pages.py [--runs 10000] [--points 100000] [--requests 100]
        [--mlflow-python PATH] [--omnilab-url URL [--omnilab-key KEY] --tracking-url URL]
        [--parallel] [--full-history] [--charts-not-kept]

What is recorded, the same data on both sides (bench/_web_data.py): ``--runs`` finished
runs of one experiment (5 params, 2 tags, 3 metrics x 5 steps each, a summary of their
last values) and one run with ``--points`` points over 4 metrics, the newest.

- omnilab: through its own store's API (``TrackingStore.create_run`` in pipelined
  transactions of 1,000 runs, each run's points with the store's ``MetricWriter``: COPY),
  then what the runner does at the big run's end: its chart series kept in the store
  (``ChartCache.keep``; ``--charts-not-kept`` leaves that out, as for a run finished
  before omnilab kept them, whose first view reduces its points);
- MLflow: through ``MlflowClient`` on the same PostgreSQL server (a database of its
  own), ``create_run`` + one ``log_batch`` + ``set_terminated`` per run, in 4 threads
  (bench/_mlflow_seed.py, run by MLflow's interpreter).

MLflow is never installed into omnilab's environment: it runs from a virtual environment
of its own, ``--mlflow-python`` or bench/.mlflow-venv (made on first use with
``python -m venv`` and ``pip install mlflow psycopg2-binary``). Its backend is
PostgreSQL, MLflow's recommended production store, on the same server as omnilab's
store, so both read the same kind of database from the same disk. ``mlflow server``
runs with its defaults (4 worker processes).

Views timed, ``--requests`` times each after 5 warm-up requests, arms alternating; a
request's time is from sending it until its whole response is read, over a keep-alive
HTTP/1.1 client (httpx) on 127.0.0.1:

- runs page: omnilab ``GET /?per_page=100`` (first page, newest first, 100 rows) against
  what MLflow's UI asks when an experiment's runs table opens: ``POST
  /ajax-api/2.0/mlflow/runs/search`` with its defaults (100 runs, ``attributes.start_time
  DESC``, active runs);
- run page: omnilab ``GET /runs/{id}`` (the page, its SVG charts drawn server-side)
  against what MLflow's UI loads for a run's page and its charts: ``runs/get`` then,
  per metric, ``metrics/get-history-bulk-interval`` with the UI's 320 sampled points,
  one after the other (the time is their sum: the server's work for the view; a browser
  would send the metric requests in parallel: ``--parallel`` also times that, the
  record, then the metrics at once on 4 connections). ``--full-history`` also times
  ``metrics/get-history`` (every point) per metric, what the REST API offers.

Goals: omnilab's p95 <= 0.5x MLflow's for the same view, and <= 150 ms per page.

omnilab's side is ``omnilab ui --port P`` started on the seeded store; where that
command does not exist yet, only MLflow's side is measured, the line saying so is
printed, and the exit status is 2. ``--omnilab-url`` times a server started by hand
instead: give it ``--tracking-url``, the (empty) store that server reads, so that the
benchmark records the runs there (and MLflow's database beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _common import percentile, tool_venv, write
from _web_data import EXPERIMENT, BenchRun, big_run, small_runs

BENCH = Path(__file__).resolve().parent
OMNILAB = Path(sys.executable).parent / "omnilab"
DEFAULT_VENV = BENCH / ".mlflow-venv"
GOAL_RATIO = 0.5
GOAL_MS = 150.0
#: What MLflow's UI sends (mlflow/server/js: the experiment page's searchRuns defaults,
#: and the run page charts' useSampledMetricHistory).
MLFLOW_UI_MAX_RESULTS = 100
MLFLOW_UI_SAMPLED_POINTS = 320
WARMUP = 5


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the database -----------------------------------------------------------------------


@contextmanager
def postgres(given: str | None) -> Iterator[str]:
    """The tracking store's URL: ``given``, or a throwaway PostgreSQL started by omnilab's
    local runtime."""
    if given:
        yield given
        return
    from omnilab import Postgres, Stack
    from omnilab.progress import QuietReporter

    if "OMNILAB_STATE_DIR" not in os.environ:  # (setdefault would make the folder anyway)
        os.environ["OMNILAB_STATE_DIR"] = tempfile.mkdtemp(prefix="omnilab-bench-")
    stack = Stack(Postgres(database="tracking"), runtime="local", reporter=QuietReporter())
    stack.start()
    try:
        running = stack.services["postgres"]
        yield running.service.url(running.endpoint, secrets=True)
    finally:
        stack.close()


def sibling_database(url: str, name: str) -> str:
    """A new database ``name`` on the server of ``url``; its URL for SQLAlchemy with
    psycopg2 (MLflow's documented driver; SQLAlchemy 2.1 would pick psycopg 3)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    server = url.rsplit("/", 1)[0].split("://", 1)[1]
    return f"postgresql+psycopg2://{server}/{name}"


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- recording the runs -------------------------------------------------------------------


def _record(run: BenchRun) -> Any:
    from omnilab.tracking.records import RunRecord

    def at(unix: float) -> datetime:
        return datetime.fromtimestamp(unix, UTC)

    return RunRecord(
        id=uuid.uuid4().hex,
        experiment=EXPERIMENT,
        status="succeeded",
        name=run.name,
        tags=run.tags,
        params=run.params,
        summary=run.summary,
        runtime="local",
        timings={
            "experiment_s": run.finished - run.created - 1,
            "total_s": run.finished - run.created,
        },
        created_at=at(run.created),
        started_at=at(run.created + 1),
        finished_at=at(run.finished),
    )


def seed_omnilab(
    tracking_url: str, runs: int, points: int, base: float, keep_charts: bool = True
) -> dict[str, Any]:
    """The runs, through omnilab's store: ``create_run`` pipelined in transactions of
    1,000, then each run's points by the store's metric writer (COPY, one per run), and
    the big run's charts kept as the runner keeps them when a run ends."""
    from omnilab.notebook.charts import CHART_WIDTH
    from omnilab.tracking.chart_cache import ChartCache
    from omnilab.tracking.store import TrackingStore

    began = time.monotonic()
    store = TrackingStore(tracking_url)
    ids: list[tuple[str, BenchRun]] = []
    chunk: list[Any] = []

    def flush() -> None:
        with store.conn.transaction(), store.conn.pipeline():
            for record in chunk:
                store.create_run(record)
        chunk.clear()

    for run in small_runs(runs, base):
        record = _record(run)
        ids.append((record.id, run))
        chunk.append(record)
        if len(chunk) == 1000:
            flush()
    big = big_run(points, base + 60.0 * runs)
    big_record = _record(big)
    chunk.append(big_record)
    flush()
    writer = store.metric_writer(big_record.id)
    for n, (run_id, run) in enumerate(ids, 1):
        writer.run_id = run_id  # one connection for all: one COPY per run, as a run writes
        writer(run.points)
        if n % 2000 == 0:
            say(f"omnilab: {n}/{runs} runs' metrics, {time.monotonic() - began:.1f} s")
    writer.run_id = big_record.id
    writer(big.points)
    writer.close()
    kept_s = None
    if keep_charts:
        t0 = time.monotonic()
        ChartCache(store).keep(big_record.id, CHART_WIDTH)
        kept_s = time.monotonic() - t0
    stored = store.conn.execute(
        "SELECT count(*) FROM omnilab.runs WHERE experiment = %s", (EXPERIMENT,)
    ).fetchone()
    store.close()
    seconds = time.monotonic() - began
    assert stored is not None and stored[0] == runs + 1, stored
    say(f"omnilab: {runs} runs + the big run ({len(big.points)} points) in {seconds:.1f} s")
    return {
        "big_run_id": big_record.id,
        "small_run_id": ids[-1][0],
        "seconds": seconds,
        "charts_kept_s": kept_s,
    }


# -- MLflow -------------------------------------------------------------------------------


def mlflow_python(given: str | None) -> Path:
    """MLflow's interpreter: ``given``, or bench/.mlflow-venv's (made here if missing)."""
    return tool_venv(
        DEFAULT_VENV, ["mlflow", "psycopg2-binary"], "python", given, "--mlflow-python"
    )


def mlflow_version(python: Path) -> str:
    done = subprocess.run(
        [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{python} cannot import mlflow: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip()


def seed_mlflow(
    python: Path, db_url: str, runs: int, points: int, base: float, artifacts: Path
) -> dict[str, Any]:
    out = artifacts / "ids.json"
    done = subprocess.run(
        [
            str(python),
            str(BENCH / "_mlflow_seed.py"),
            "--runs",
            str(runs),
            "--points",
            str(points),
            "--base",
            str(base),
            "--artifacts",
            str(artifacts),
            "--out",
            str(out),
        ],
        env={**os.environ, "BENCH_MLFLOW_DB": db_url},
    )
    if done.returncode != 0:
        sys.exit(f"recording the runs into MLflow failed (exit {done.returncode}): see above")
    ids: dict[str, Any] = json.loads(out.read_text())
    return ids


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server in a session of its own (MLflow's forks workers); its whole group ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            sys.exit(f"{what} exited ({proc.returncode}): {' | '.join(tail)}")
        try:
            if httpx.get(url, timeout=2, follow_redirects=True).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit(f"{what} did not answer {url} within 120 s (its output: {log})")


def omnilab_ui_missing() -> str | None:
    """Why ``omnilab ui`` cannot be started from this checkout (one line), or None."""
    done = subprocess.run([str(OMNILAB), "ui", "--help"], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    return (
        "omnilab ui is not available in this checkout (`omnilab ui --help` exit "
        f"{done.returncode}): only MLflow's side is measured"
    )


# -- the views ----------------------------------------------------------------------------


class Views:
    """One request sequence per view and side, each checking that it got the page."""

    def __init__(
        self,
        omnilab: httpx.Client | None,
        mlflow: httpx.Client,
        experiment_id: str,
        omnilab_big: str,
        mlflow_big: str,
    ) -> None:
        self.omnilab, self.mlflow = omnilab, mlflow
        self.experiment_id = experiment_id
        self.omnilab_big, self.mlflow_big = omnilab_big, mlflow_big
        self.facts: dict[str, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._clients: list[httpx.Client] = []

    def warm_run_pages(self, omnilab_small: str | None) -> None:
        """Each side's run page once on a small run: what a server does once, not once a
        run (templates compiled, code paths loaded), stays out of the big run's first
        view."""
        if self.omnilab is not None and omnilab_small is not None:
            self.omnilab.get(f"/runs/{omnilab_small}").raise_for_status()
        found = self.mlflow.post(
            "/ajax-api/2.0/mlflow/runs/search",
            json={"experiment_ids": [self.experiment_id], "max_results": 2},
        )
        found.raise_for_status()
        ids = [r["info"]["run_id"] for r in found.json()["runs"]]
        small = next(i for i in ids if i != self.mlflow_big)
        record = self.mlflow.get("/ajax-api/2.0/mlflow/runs/get", params={"run_id": small})
        record.raise_for_status()
        self.mlflow.get(
            "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
            params={
                "run_ids": small,
                "metric_key": "loss",
                "max_results": MLFLOW_UI_SAMPLED_POINTS,
            },
        ).raise_for_status()

    def omnilab_runs(self) -> int:
        assert self.omnilab is not None
        # As many rows as MLflow's UI asks for (omnilab's default page is 50).
        response = self.omnilab.get("/", params={"per_page": MLFLOW_UI_MAX_RESULTS})
        response.raise_for_status()
        rows = len(re.findall(r"<tr[^>]*\sdata-run-id=", response.text))
        assert rows > 0, "omnilab's runs page shows no run"
        self.facts["omnilab_runs_rows"] = rows
        return len(response.content)

    def omnilab_run(self) -> int:
        assert self.omnilab is not None
        response = self.omnilab.get(f"/runs/{self.omnilab_big}")
        response.raise_for_status()
        charts = len(re.findall(r"class=\"[^\"]*\bmetric-chart\b", response.text))
        assert charts >= 4 and "<svg" in response.text, "omnilab's run page has no charts"
        self.facts["omnilab_run_charts"] = charts
        return len(response.content)

    def mlflow_runs(self) -> int:
        response = self.mlflow.post(
            "/ajax-api/2.0/mlflow/runs/search",
            json={
                "experiment_ids": [self.experiment_id],
                "filter": "",
                "run_view_type": "ACTIVE_ONLY",
                "max_results": MLFLOW_UI_MAX_RESULTS,
                "order_by": ["attributes.start_time DESC"],
            },
        )
        response.raise_for_status()
        runs = response.json()["runs"]
        assert len(runs) == MLFLOW_UI_MAX_RESULTS, len(runs)
        self.facts["mlflow_runs_rows"] = len(runs)
        return len(response.content)

    def _mlflow_run_record(self) -> tuple[list[str], int]:
        response = self.mlflow.get(
            "/ajax-api/2.0/mlflow/runs/get", params={"run_id": self.mlflow_big}
        )
        response.raise_for_status()
        keys = [m["key"] for m in response.json()["run"]["data"]["metrics"]]
        assert len(keys) == 4, keys
        return keys, len(response.content)

    def _sampled(self, client: httpx.Client, key: str) -> tuple[int, int]:
        """One metric's chart data as MLflow's UI asks it: (points, bytes)."""
        response = client.get(
            "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
            params={
                "run_ids": self.mlflow_big,
                "metric_key": key,
                "max_results": MLFLOW_UI_SAMPLED_POINTS,
            },
        )
        response.raise_for_status()
        return len(response.json()["metrics"]), len(response.content)

    def mlflow_run(self) -> int:
        keys, size = self._mlflow_run_record()
        points = 0
        for key in keys:
            n, more = self._sampled(self.mlflow, key)
            points, size = points + n, size + more
        self.facts["mlflow_run_sampled_points"] = points
        return size

    def mlflow_run_parallel(self) -> int:
        """As a browser loads it: the record, then every metric at once, each on a
        keep-alive connection of its own (MLflow's server has 4 worker processes)."""
        keys, size = self._mlflow_run_record()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(keys))
            self._clients = [httpx.Client(base_url=self.mlflow.base_url, timeout=120) for _ in keys]
        for _n, more in self._pool.map(self._sampled, self._clients, keys):
            size += more
        return size

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            for client in self._clients:
                client.close()

    def mlflow_run_full(self) -> int:
        keys, size = self._mlflow_run_record()
        points = 0
        for key in keys:
            token: str | None = None
            while True:
                params = {"run_id": self.mlflow_big, "metric_key": key}
                if token:
                    params["page_token"] = token
                response = self.mlflow.get(
                    "/ajax-api/2.0/mlflow/metrics/get-history", params=params
                )
                response.raise_for_status()
                body = response.json()
                points += len(body["metrics"])
                size += len(response.content)
                token = body.get("next_page_token")
                if not token:
                    break
        self.facts["mlflow_run_full_points"] = points
        return size


def time_arms(
    arms: dict[str, Callable[[], int]], requests: int, label: str
) -> dict[str, dict[str, float]]:
    """Each arm ``requests`` times after WARMUP, alternating which goes first."""
    for fn in arms.values():
        for _ in range(WARMUP):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in arms}
    sizes: dict[str, int] = {}
    names = list(arms)
    for i in range(requests):
        for name in names if i % 2 == 0 else reversed(names):
            t0 = time.perf_counter()
            sizes[name] = arms[name]()
            samples[name].append((time.perf_counter() - t0) * 1000)
        if (i + 1) % max(1, requests // 4) == 0:
            say(f"{label}: {i + 1}/{requests}")
    out: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        values.sort()
        out[name] = {
            "n": len(values),
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "max_ms": values[-1],
            "bytes": sizes[name],
        }
    return out


def compare(view: dict[str, dict[str, float]], omnilab: str, mlflow: str) -> dict[str, Any]:
    if omnilab not in view:
        return {"ratio_p95": None, "ratio_p50": None, "goal_ratio_met": None, "goal_ms_met": None}
    o, m = view[omnilab], view[mlflow]
    ratio = o["p95_ms"] / m["p95_ms"]
    return {
        "ratio_p95": ratio,
        "ratio_p50": o["p50_ms"] / m["p50_ms"],
        "goal_ratio_met": ratio <= GOAL_RATIO,
        "goal_ms_met": o["p95_ms"] <= GOAL_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument(
        "--mlflow-python", help="MLflow's interpreter (default: bench/.mlflow-venv)"
    )
    parser.add_argument("--omnilab-url", help="time this omnilab server instead of starting one")
    parser.add_argument("--omnilab-key", help="an API key to sign in with (omnilab serve)")
    parser.add_argument("--tracking-url", help="record the runs into this (empty) store")
    parser.add_argument("--full-history", action="store_true", help="also MLflow's get-history")
    parser.add_argument(
        "--parallel", action="store_true", help="also MLflow's run page as a browser loads it"
    )
    parser.add_argument(
        "--charts-not-kept",
        action="store_true",
        help="leave out the big run's kept charts (a run finished before omnilab kept them)",
    )
    args = parser.parse_args()
    if args.omnilab_url and not args.tracking_url:
        parser.error("--omnilab-url needs --tracking-url: the store that server reads")

    python = mlflow_python(args.mlflow_python)
    version = mlflow_version(python)
    missing = None if args.omnilab_url else omnilab_ui_missing()
    if missing:
        say(missing)
    base = time.time() - 60.0 * (args.runs + 10)
    work = Path(tempfile.mkdtemp(prefix="web-pages-"))
    results: dict[str, Any] = {
        "config": {
            "runs": args.runs,
            "points": args.points,
            "requests": args.requests,
            "mlflow": version,
            "mlflow_backend": "postgresql (same server as omnilab's store)",
            "client": "httpx keep-alive HTTP/1.1 on 127.0.0.1, one request at a time",
            "mlflow_server": "mlflow server defaults (4 uvicorn workers), "
            "worker health check 120 s",
            "mlflow_runs_view": "POST /ajax-api/2.0/mlflow/runs/search "
            f"max_results={MLFLOW_UI_MAX_RESULTS}",
            "mlflow_run_view": "runs/get + metrics/get-history-bulk-interval "
            f"max_results={MLFLOW_UI_SAMPLED_POINTS} per metric, sequential",
            "omnilab_charts_kept_at_run_end": not args.charts_not_kept,
        },
        "load_before": os.getloadavg(),
        "omnilab_missing": missing,
    }
    with ExitStack() as stack:
        tracking_url = stack.enter_context(postgres(args.tracking_url))
        mlflow_db_name = f"mlflow_bench_{uuid.uuid4().hex[:6]}"
        mlflow_db = sibling_database(tracking_url, mlflow_db_name)
        stack.callback(drop_database, tracking_url, mlflow_db_name)
        say(f"recording {args.runs} runs and a run of {args.points} points in each store...")
        results["omnilab_seed"] = seed_omnilab(
            tracking_url, args.runs, args.points, base, keep_charts=not args.charts_not_kept
        )
        (work / "artifacts").mkdir()
        results["mlflow_seed"] = seed_mlflow(
            python, mlflow_db, args.runs, args.points, base, work / "artifacts"
        )

        mlflow_port = free_port()
        mlflow_log = work / "mlflow.log"
        mlflow_proc = stack.enter_context(
            process(
                [
                    str(python),
                    "-m",
                    "mlflow",
                    "server",
                    "--default-artifact-root",
                    str(work / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                    # Uvicorn's manager kills a worker that misses a 5 s health check:
                    # on a loaded machine a worker busy with a runs search does.
                    "--uvicorn-opts",
                    "--timeout-worker-healthcheck 120",
                ],
                # Its URL holds a password: in the environment, not on a command line.
                {**os.environ, "MLFLOW_BACKEND_STORE_URI": mlflow_db},
                mlflow_log,
            )
        )
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        wait_up(f"{mlflow_url}/health", mlflow_proc, mlflow_log, "mlflow server")

        omnilab_url = args.omnilab_url
        if omnilab_url is None and missing is None:
            port = free_port()
            log = work / "omnilab-ui.log"
            proc = stack.enter_context(
                process(
                    [str(OMNILAB), "ui", "--port", str(port)],
                    {**os.environ, "OMNILAB_TRACKING_URL": tracking_url},
                    log,
                )
            )
            omnilab_url = f"http://127.0.0.1:{port}"
            wait_up(f"{omnilab_url}/", proc, log, "omnilab ui")
        omnilab_client = None
        if omnilab_url:
            omnilab_client = stack.enter_context(
                httpx.Client(base_url=omnilab_url, timeout=60, follow_redirects=True)
            )
            if args.omnilab_key:
                signed = omnilab_client.post("/login", data={"key": args.omnilab_key})
                if signed.status_code >= 400 or not omnilab_client.cookies:
                    sys.exit(f"signing in to {omnilab_url} failed ({signed.status_code})")
        mlflow_client = stack.enter_context(httpx.Client(base_url=mlflow_url, timeout=120))
        views = Views(
            omnilab_client,
            mlflow_client,
            results["mlflow_seed"]["experiment_id"],
            results["omnilab_seed"]["big_run_id"],
            results["mlflow_seed"]["big_run_id"],
        )
        runs_arms: dict[str, Callable[[], int]] = {"mlflow": views.mlflow_runs}
        run_arms: dict[str, Callable[[], int]] = {"mlflow": views.mlflow_run}
        if omnilab_client is not None:
            runs_arms = {"omnilab": views.omnilab_runs, **runs_arms}
            run_arms = {"omnilab": views.omnilab_run, **run_arms}
        if args.parallel:
            run_arms["mlflow_parallel"] = views.mlflow_run_parallel
        if args.full_history:
            run_arms["mlflow_full_history"] = views.mlflow_run_full
        stack.callback(views.close)
        results["runs_page"] = time_arms(runs_arms, args.requests, "runs page")
        # A server process keeps the charts it showed: the first view, before the
        # warm-up, is timed apart (each arm's first request), once each side has shown
        # a small run's page. omnilab's reads the charts kept at the run's end, or
        # (--charts-not-kept) reduces the run's points.
        views.warm_run_pages(results["omnilab_seed"]["small_run_id"])
        results["run_page_first_view_ms"] = {}
        for name, fn in run_arms.items():
            t0 = time.perf_counter()
            fn()
            results["run_page_first_view_ms"][name] = (time.perf_counter() - t0) * 1000
        results["run_page"] = time_arms(run_arms, args.requests, "run page")
        results["facts"] = views.facts
    results["load_after"] = os.getloadavg()
    results["runs_page"]["comparison"] = compare(results["runs_page"], "omnilab", "mlflow")
    results["run_page"]["comparison"] = compare(results["run_page"], "omnilab", "mlflow")
    report(results)
    path = write("web_pages", results)
    say(f"written {path}")
    shutil.rmtree(work, ignore_errors=True)  # kept when the benchmark fails: the servers' logs
    if missing:
        sys.exit(2)


def report(results: dict[str, Any]) -> None:
    say("")
    first = results.get("run_page_first_view_ms") or {}
    if first:
        shown = ", ".join(f"{name} {ms:.1f} ms" for name, ms in first.items())
        how = (
            "kept at the run's end"
            if results["config"].get("omnilab_charts_kept_at_run_end")
            else "not kept: reduced at the view"
        )
        say(f"run page, first view (omnilab's charts {how}): {shown}")
    for view in ("runs_page", "run_page"):
        timed = results[view]
        say(f"{view.replace('_', ' ')}:")
        for arm, figures in timed.items():
            if arm == "comparison":
                continue
            say(
                f"  {arm:<20} p50 {figures['p50_ms']:8.1f} ms  p95 {figures['p95_ms']:8.1f} ms"
                f"  max {figures['max_ms']:8.1f} ms  {figures['bytes'] / 1024:8.1f} KiB"
            )
        verdict = timed["comparison"]
        if verdict["ratio_p95"] is None:
            say("  omnilab: not measured")
        else:
            say(
                f"  ratio omnilab/MLflow p95 {verdict['ratio_p95']:.2f}x (goal <= {GOAL_RATIO}x: "
                f"{'met' if verdict['goal_ratio_met'] else 'NOT met'}), p50 "
                f"{verdict['ratio_p50']:.2f}x; omnilab p95 <= {GOAL_MS:.0f} ms: "
                f"{'met' if verdict['goal_ms_met'] else 'NOT met'}"
            )
    say(f"facts: {results.get('facts')}")
    say(f"load average before {results['load_before']}, after {results['load_after']}")


if __name__ == "__main__":
    main()
