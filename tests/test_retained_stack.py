"""A promotable run's stack: stopped cleanly with its data kept, reopened later on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from qdrant_client import models

import omnilab
from omnilab import OmnilabError, Postgres, Qdrant, Redis, Stack
from omnilab.progress import QuietReporter
from tests.support import stack_processes, wait_until


def _retained_stack() -> Stack:
    stack = Stack(
        Redis(),
        Postgres(database="kept"),
        Qdrant(),
        runtime="local",
        run_id=uuid.uuid4().hex,
        retain_data=True,
        reporter=QuietReporter(),
    )
    stack.start()
    stack.redis.set("plain", "v")
    stack.redis.set("ttl", "v", ex=5000)
    stack.redis.hset("h", mapping={"a": "1"})
    stack.postgres.execute("CREATE TABLE t (id serial PRIMARY KEY, x text)")
    stack.postgres.execute("INSERT INTO t (x) VALUES ('a'), ('b')")
    stack.qdrant.create_collection(
        "c", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
    )
    stack.qdrant.upsert("c", [models.PointStruct(id=1, vector=[1.0, 2.0], payload={"p": 1})])
    stack.close()
    return stack


def test_data_survives_stop_and_reopen(workdir: Path) -> None:
    stack = _retained_stack()
    path = stack.retained_path
    assert path == workdir / "data" / "experiments" / stack.run_id
    assert not stack_processes(path), "the servers stopped"
    assert stack.describe()["data"] == {"path": str(path)}
    creds = path / "credentials.json"
    assert creds.stat().st_mode & 0o777 == 0o600
    password = stack.endpoint("redis").credentials.password
    assert password and password in creds.read_text()
    assert password not in (path / "stack.json").read_text()

    again = Stack.reopen(path, reporter=QuietReporter())
    try:
        assert again.redis.get("plain") == "v" and 4000 < again.redis.ttl("ttl") <= 5000
        assert again.redis.hgetall("h") == {"a": "1"}
        assert again.postgres.execute("SELECT x FROM t ORDER BY id").fetchall() == [("a",), ("b",)]
        assert again.qdrant.retrieve("c", [1])[0].payload == {"p": 1}
        assert again.endpoint("redis").credentials.password == password
    finally:
        again.close()
    assert path.is_dir() and not stack_processes(path)
    # Only the services asked for are started.
    only = Stack.reopen(path, services=["redis"], reporter=QuietReporter())
    try:
        assert set(only.services) == {"redis"} and only.redis.get("plain") == "v"
    finally:
        only.close()


def test_a_reopened_stack_whose_owner_is_killed_keeps_its_data(workdir: Path) -> None:
    stack = _retained_stack()
    path = stack.retained_path
    script = (
        "import sys, time\n"
        "from omnilab import Stack\n"
        "from omnilab.progress import QuietReporter\n"
        f"s = Stack.reopen({str(path)!r}, services=['redis', 'postgres'], "
        "reporter=QuietReporter())\n"
        "print('open', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        assert stack_processes(path)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert wait_until(lambda: not stack_processes(path), timeout=15), "the watcher stops them"
    assert (path / "postgres").is_dir() and (path / "stack.json").exists()
    again = Stack.reopen(path, services=["postgres"], reporter=QuietReporter())
    try:
        assert again.postgres.execute("SELECT count(*) FROM t").fetchone() == (2,)
    finally:
        again.close()


def test_reopening_what_is_gone_is_a_clear_error(workdir: Path) -> None:
    with pytest.raises(omnilab.UsageError, match="no kept stack data at"):
        Stack.reopen(workdir / "nothing-here")
    stack = _retained_stack()
    with pytest.raises(omnilab.UsageError, match="has no ollama"):
        Stack.reopen(stack.retained_path, services=["ollama"])
    descriptor = stack.retained_path / "stack.json"
    data = json.loads(descriptor.read_text())
    data["services"]["redis"]["persisted"] = False
    data["services"]["redis"]["error"] = "disk full"
    descriptor.write_text(json.dumps(data))
    with pytest.raises(OmnilabError, match=r"redis.s data was not saved completely.*disk full"):
        Stack.reopen(stack.retained_path, services=["redis"])


def test_run_records_say_where_the_data_is_and_hold_no_secret(workdir: Path) -> None:
    from tests.support import EXPERIMENTS

    run = omnilab.run(str(EXPERIMENTS / "promotable.py"), reporter=QuietReporter())
    data = run.data
    assert data["state"] == "kept" and data["host"] and data["expires_at"]
    assert [p["kind"] for p in data["promotes"]] == [
        "qdrant_collection",
        "redis_keys",
        "postgres_table",
    ]
    path = Path(data["path"])
    secrets = json.loads((path / "credentials.json").read_text())
    record = json.dumps(run.to_dict())
    logs = "".join(p.read_text(errors="replace") for p in run.logs_dir.glob("*.log"))
    for creds in secrets.values():
        if creds.get("password"):
            assert creds["password"] not in record and creds["password"] not in logs


def test_a_reopen_that_fails_to_start_keeps_the_data(workdir: Path) -> None:
    """A server that does not come back (here PostgreSQL, given a setting it refuses)
    fails the reopen: the servers that did start are stopped, and the kept data stays,
    whole, for another try."""
    stack = _retained_stack()
    path = stack.retained_path
    assert path is not None
    auto_conf = next(path.glob("postgres/pgdata/postgresql.auto.conf"))
    original = auto_conf.read_text()
    auto_conf.write_text(original + "shared_buffers = 'not a size'\n")
    with pytest.raises(OmnilabError):
        Stack.reopen(path, reporter=QuietReporter())
    assert path.is_dir() and not stack_processes(path)
    auto_conf.write_text(original)
    again = Stack.reopen(path, reporter=QuietReporter())
    try:
        assert again.redis.get("plain") == "v"
        assert again.postgres.execute("SELECT x FROM t ORDER BY id").fetchall() == [("a",), ("b",)]
    finally:
        again.close()
