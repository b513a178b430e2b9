"""What the queue benchmarks share: a throwaway Redis and PostgreSQL started by omnilab,
an experiments folder, and ``omnilab serve`` / ``omnilab worker`` as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

OMNILAB = Path(sys.executable).parent / "omnilab"

NOOP_EXPERIMENT = '''
import os
import time

import redis

from omnilab import Experiment

_bench = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


class Noop(Experiment):
    """No services: reports the moment its code starts, then returns."""

    gpu = False

    def run(self, ctx):
        began = time.time()
        _bench.rpush("bench:began", repr(began))
        return {"began": began}
'''


@dataclass
class Servers:
    redis_url: str
    tracking_url: str
    folder: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(OMNILAB), *args],
            cwd=self.folder,
            env={**os.environ, **self.env, **(extra or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def serve(self, port: int, extra: dict[str, str] | None = None) -> str:
        self.spawn("serve", "--port", str(port), "--log-level", "warning", extra=extra)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("omnilab serve did not start")

    def api_key(self) -> str:
        out = subprocess.run(
            [
                str(OMNILAB),
                "api-key",
                "create",
                "--name",
                "bench",
                "--scope",
                "run",
                "--scope",
                "read",
            ],
            cwd=self.folder,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            for _ in range(2):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        time.sleep(1.1)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@contextmanager
def servers(experiment_source: str = NOOP_EXPERIMENT) -> Iterator[Servers]:
    """Redis and PostgreSQL (local runtime), an experiments folder; stopped at the end."""
    from omnilab import Postgres, Redis, Stack
    from omnilab.progress import QuietReporter

    if "OMNILAB_STATE_DIR" not in os.environ:  # (setdefault would make the folder anyway)
        os.environ["OMNILAB_STATE_DIR"] = tempfile.mkdtemp(prefix="omnilab-bench-")
    folder = Path(tempfile.mkdtemp(prefix="omnilab-bench-queue-"))
    (folder / "experiments").mkdir()
    (folder / "experiments" / "noop.py").write_text(experiment_source)
    stack = Stack(Redis(), Postgres(database="tracking"), runtime="local", reporter=QuietReporter())
    stack.start()
    try:
        redis_svc, pg_svc = stack.services["redis"], stack.services["postgres"]
        redis_url = redis_svc.service.url(redis_svc.endpoint, secrets=True)
        tracking_url = pg_svc.service.url(pg_svc.endpoint, secrets=True)
        env = {
            "REDIS_URL": redis_url,
            "BENCH_REDIS_URL": redis_url,
            "OMNILAB_TRACKING_URL": tracking_url,
            "OMNILAB_EXPERIMENTS_DIR": str(folder / "experiments"),
            "OMNILAB_RUNS_DIR": str(folder / "runs"),
            "OMNILAB_RUNTIME": "local",
        }
        found = Servers(redis_url, tracking_url, folder, env)
        try:
            yield found
        finally:
            found.stop()
    finally:
        stack.close()
        shutil.rmtree(folder, ignore_errors=True)
