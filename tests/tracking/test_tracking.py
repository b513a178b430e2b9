"""The tracking store: versioned schema, buffered metrics, the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from omnilab.errors import TrackingStoreError
from omnilab.tracking import schema
from omnilab.tracking.metrics import MetricBuffer
from omnilab.tracking.records import RunRecord
from omnilab.tracking.store import TrackingStore
from tests.support import HELLO, run_cli, wait_until


@pytest.fixture
def fresh_db(tracking_url: str) -> str:
    """A database of its own on the session's server, for schema tests."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(tracking_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return tracking_url.rsplit("/", 1)[0] + f"/{name}"


def test_migrations_are_versioned_and_applied_once(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert schema.migrate(conn) == [m.version for m in schema.available()]
        assert schema.migrate(conn) == []
        assert schema.current_version(conn) == schema.available()[-1].version
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'omnilab'"
            )
        }
        assert {"runs", "metrics", "artifacts", "_yoyo_migration"} <= tables


def test_a_newer_schema_is_refused(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        schema.migrate(conn)
        conn.execute(
            "INSERT INTO omnilab._yoyo_migration (migration_hash, migration_id, applied_at_utc)"
            " VALUES ('x', '0999_x', now())"
        )
    with pytest.raises(TrackingStoreError, match="newer than this omnilab knows"):
        TrackingStore(fresh_db)


def test_unreachable_store_is_one_clear_error() -> None:
    with pytest.raises(TrackingStoreError) as info:
        TrackingStore("postgresql://u:secretpw@127.0.0.1:1/none")
    assert "cannot reach the tracking store" in str(info.value)
    # libpq's cause, not the hint it indents under it ("Is the server running...?")
    assert str(info.value).endswith("port 1 failed: Connection refused"), str(info.value)
    assert "secretpw" not in str(info.value)


def test_both_ends_give_up_on_a_silent_peer_within_seconds(fresh_db: str) -> None:
    """A host cut off from the network must not keep its session, and the locks it holds,
    for the operating system's two hours: each session asks the server for keepalive
    probes (and libpq asks its own end). A URL that sets its own values keeps them.
    (tests/cluster/test_cluster.py cuts a host off while it holds the locks.)"""
    from omnilab.tracking.base import DEAD_PEER_S

    names = ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
    names += ("tcp_user_timeout",)

    def server_side(store: TrackingStore) -> list[str]:
        return [str(store.conn.execute(f"SHOW {name}").fetchone()[0]) for name in names]

    with TrackingStore(fresh_db) as store:
        assert server_side(store) == ["10", "5", "3", str(DEAD_PEER_S * 1000)]
        client = store.conn.info.get_parameters()
        assert client["keepalives"] == "1"
        assert client["tcp_user_timeout"] == str(DEAD_PEER_S * 1000)
    own = f"{fresh_db}?keepalives_idle=60&options=-c%20tcp_keepalives_idle%3D60"
    with TrackingStore(own) as store:
        assert server_side(store)[:2] == ["60", "5"]
        assert store.conn.info.get_parameters()["keepalives_idle"] == "60"


def _record(run_id: str) -> RunRecord:
    return RunRecord(id=run_id, experiment="T", status="running")


def test_metrics_reach_the_store_in_batches_with_steps() -> None:
    run_id = uuid.uuid4().hex
    with TrackingStore.open() as store:
        store.create_run(_record(run_id))
        writer = store.metric_writer(run_id)
        buffer = MetricBuffer(writer, interval=0.05)
        for i in range(20_000):
            buffer.log("loss", 1.0 / (i + 1))
        buffer.log("acc", 0.5, step=10)
        buffer.log("acc", 0.7)  # continues after the highest step given
        assert buffer.close() == []
        writer.close()
        summaries = {m.key: m for m in store.metric_summaries(run_id)}
        assert summaries["loss"].count == 20_000
        assert summaries["loss"].last_step == 19_999
        assert summaries["loss"].last == pytest.approx(1 / 20_000)
        assert [(p.step, p.value) for p in store.metrics(run_id, "acc")] == [(10, 0.5), (11, 0.7)]


def test_bad_metric_values_fail_at_the_call() -> None:
    buffer = MetricBuffer(lambda rows: None)
    with pytest.raises(TypeError, match="must be a number"):
        buffer.log("x", "high")
    with pytest.raises(ValueError, match="non-empty string"):
        buffer.log("", 1)
    buffer.close()


def test_metrics_survive_a_failing_writer() -> None:
    calls = []

    def failing(rows):  # type: ignore[no-untyped-def]
        calls.append(len(rows))
        raise OSError("store gone")

    buffer = MetricBuffer(failing, interval=0.01)
    for i in range(100):
        buffer.log("m", i)
    time.sleep(0.05)
    unsent = buffer.close()
    assert len(unsent) == 100 and [r[1] for r in unsent] == list(range(100))
    assert buffer.errors == ["OSError: store gone"]


def test_log_metric_costs_the_caller_microseconds() -> None:
    buffer = MetricBuffer(lambda rows: None)
    began = time.perf_counter()
    for i in range(50_000):
        buffer.log("m", i)
    per_call = (time.perf_counter() - began) / 50_000
    buffer.close()
    # Generous bound (a loaded CI machine); bench/metric_logging.py measures properly.
    assert per_call < 100e-6


def test_embedded_store_is_the_default(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNILAB_TRACKING_URL")
    result = run_cli("run", HELLO, "-p", "n_items=3", "--json")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["id"]
    pgdata = workdir / ".omnilab" / "pgdata"
    assert (pgdata / "PG_VERSION").is_file()
    # The last user stopped it; the next command starts it again and finds the run.
    assert wait_until(lambda: not (pgdata / "postmaster.pid").exists(), timeout=10)
    shown = run_cli("runs", "show", run_id[:8], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["summary"]["redis_keys"] == 3
    assert not (pgdata / "postmaster.pid").exists()


def test_embedded_store_is_shared_by_concurrent_users(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnilab.tracking.embedded import EmbeddedPostgres

    monkeypatch.delenv("OMNILAB_TRACKING_URL")
    first = EmbeddedPostgres(workdir / ".omnilab")
    second = EmbeddedPostgres(workdir / ".omnilab")
    dsn = first.acquire()
    assert second.acquire() == dsn
    first.release()  # the other user still holds it: the server stays
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    second.release()
    assert not first.running()
    assert not os.path.exists(first.socket_dir)


def test_embedded_store_stops_after_its_last_user_is_killed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnilab.tracking.embedded import EmbeddedPostgres

    monkeypatch.delenv("OMNILAB_TRACKING_URL")
    home = workdir / ".omnilab"
    user = _user(home)
    store = EmbeddedPostgres(home)
    assert store.running()
    # Another user comes: the first one's death leaves the server to it...
    store.acquire()
    user.kill()
    user.wait()
    time.sleep(1)
    assert store.running()
    # ...and it stops the server itself when it leaves, the watcher with it.
    store.release()
    assert not store.running()
    assert wait_until(lambda: not _watchers(home), timeout=10)

    # Now the last user is the one killed: nothing of it is left to stop the server but
    # its watcher, which does, at once.
    user = _user(home)
    assert store.running()
    user.kill()
    user.wait()
    assert wait_until(lambda: not store.running(), timeout=15)
    assert wait_until(lambda: not os.path.exists(store.socket_dir), timeout=5)
    assert wait_until(lambda: not _watchers(home), timeout=10)
    assert "stopped the server: its users are gone" in (home / "pg.log").read_text()


def _user(home: Path) -> subprocess.Popen[str]:
    """Another process using the embedded store of ``home``, until killed."""
    user = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from omnilab.tracking.embedded import EmbeddedPostgres; "
            "EmbeddedPostgres(sys.argv[1]).acquire(); print('in', flush=True); time.sleep(300)",
            str(home),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert user.stdout is not None and user.stdout.readline() == "in\n"
    return user


def _watchers(home: Path) -> list[int]:
    """Pids of the embedded store watchers of ``home``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"omnilab.tracking.embedded_watch" in argv and str(home).encode() in argv:
                found.append(int(entry.name))
    return found
