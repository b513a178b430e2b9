"""All or nothing: a promotion that fails half way leaves production as it was.

Failures are real: the promoting process killed with SIGKILL during the copy, its
production connection terminated by the server, a Redis memory quota and a PostgreSQL
statement timeout reached, production changing under a switch, a reader holding a lock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import omnilab
from omnilab.progress import QuietReporter
from omnilab.promote import PromotionFailed, promote
from tests.support import OMNILAB, run_cli, stack_processes, wait_until
from tests.support.promotion_support import Production, run_promotable, seed_production

Q = QuietReporter()


def visible(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What production readers see: omnilab's staging and kept names left out."""
    qdrant = snapshot["qdrant"] or {"aliases": [], "collections": {}}
    tables = snapshot["pg"]["tables"]
    collections = qdrant["collections"]
    return {
        "redis": {k: v for k, v in snapshot["redis"].items() if not k.startswith(b"omnilab:")},
        "pg": {k: v for k, v in tables.items() if not k.startswith("omnilab")},
        "qdrant": {
            "aliases": qdrant["aliases"],
            "collections": {k: v for k, v in collections.items() if "__omnilab_" not in k},
        },
    }


def assert_nothing_left(production: Production) -> None:
    snap = production.snapshot()
    assert not [k for k in snap["redis"] if k.startswith(b"omnilab:")]
    assert not [s for s in snap["pg"]["schemas"] if s.startswith("omnilab")]
    assert not [c for c in (snap["qdrant"] or {}).get("collections", {}) if "__omnilab_" in c]


def test_a_killed_promotion_leaves_readers_unaffected_and_is_undone_next_time(
    production: Production, workdir: Path
) -> None:
    seed_production(production)
    run = run_promotable(n_rows=400_000, n_keys=60)
    before = production.snapshot()
    proc = subprocess.Popen(
        [str(OMNILAB), "promote", run.id, "--on-conflict", "replace"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def copying_rows() -> bool:
        with production.pg() as conn:
            return bool(
                conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY %omnilab_staging_%'"
                ).fetchone()
            )

    try:
        assert wait_until(copying_rows, timeout=60, interval=0.01), "the copy never started"
        proc.send_signal(signal.SIGKILL)  # no cleanup of its own is possible
        proc.wait(timeout=10)
    finally:
        proc.kill()
    # Readers see production exactly as before; only omnilab's staging names were added.
    during = production.snapshot()
    assert visible(during) == visible(before)
    # The reopened stack's servers were stopped by its watcher; the run's data stays.
    assert wait_until(lambda: not stack_processes(workdir / "data"), timeout=15)
    assert omnilab.Run.load(run.id).data["state"] == "kept"
    listed = run_cli("promotions", "ls", "--json")
    [interrupted] = json.loads(listed.stdout)
    assert interrupted["status"] == "running"
    assert "interrupted" in run_cli("promotions", "ls").stdout
    # The next promotion undoes the interrupted one first, then does its own.
    again = run_cli("promote", run.id, "--on-conflict", "replace")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"promotion {interrupted['id'][:8]} had been interrupted" in again.stderr
    records = {r["id"]: r for r in json.loads(run_cli("promotions", "ls", "--json").stdout)}
    assert records[interrupted["id"]]["status"] == "failed"
    assert "interrupted" in records[interrupted["id"]]["error"]
    with production.pg() as conn:
        assert conn.execute("SELECT count(*) FROM scores").fetchone() == (400_000,)
    staging = [s for s in production.snapshot()["pg"]["schemas"] if "staging" in s]
    assert not staging


def test_a_broken_connection_fails_the_promotion_and_changes_nothing(
    production: Production,
) -> None:
    seed_production(production)
    run = run_promotable(n_rows=400_000)
    before = production.snapshot()
    killed: list[int] = []

    def break_it() -> None:
        with production.pg() as conn:
            for _ in range(6000):
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY %omnilab_staging_%'"
                    " AND pid <> pg_backend_pid()"
                ).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", row)
                    killed.append(row[0])
                    return
                time.sleep(0.01)

    breaker = threading.Thread(target=break_it)
    breaker.start()
    try:
        with pytest.raises(PromotionFailed, match=r"connection|terminat|closed"):
            promote(run.id, on_conflict="replace", reporter=Q)
    finally:
        breaker.join()
    assert killed, "the copy's connection was never found"
    assert production.snapshot() == before
    [record] = omnilab.Run.load(run.id).promotions
    assert record.status == "failed" and record.error
    assert {i.state for i in record.items} == {"failed"}


def test_a_full_redis_fails_the_promotion_and_changes_nothing(production: Production) -> None:
    seed_production(production)
    run = run_promotable(n_keys=3000)
    client = production.redis()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 40_000)  # room for a few hundred keys, not 3,000
    client.close()
    before = production.snapshot()
    with pytest.raises(PromotionFailed, match="OOM"):
        promote(run.id, on_conflict="replace", reporter=Q)
    after = production.snapshot()
    assert after == before
    assert omnilab.Run.load(run.id).data["state"] == "kept"


def test_a_statement_timeout_fails_the_promotion_and_changes_nothing(
    production: Production,
) -> None:
    seed_production(production)
    run = run_promotable(n_rows=400_000)
    with production.pg() as conn:
        conn.execute("ALTER ROLE omnimind SET statement_timeout = '100ms'")
    before = production.snapshot()
    with pytest.raises(PromotionFailed, match="statement timeout"):
        promote(run.id, on_conflict="replace", reporter=Q)
    assert production.snapshot() == before


def test_a_failed_switch_switches_back_the_items_already_switched(
    production: Production,
) -> None:
    """Production writes a key the plan creates while the promotion runs: the Redis
    switch (the last one) refuses, and the PostgreSQL and Qdrant switches are undone."""
    run = run_promotable(n_rows=200_000)
    before = production.snapshot()

    def write_meanwhile() -> None:
        client = production.redis()
        try:
            for _ in range(6000):
                if list(client.scan_iter("omnilab:staging:*", count=1000)):
                    client.set("emb:0", "written by production meanwhile")
                    return
                time.sleep(0.005)
        finally:
            client.close()

    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    try:
        with pytest.raises(PromotionFailed, match="production changed while promoting"):
            promote(run.id, reporter=Q)
    finally:
        writer.join()
    after = production.snapshot()
    assert after["redis"] == {b"emb:0": (after["redis"][b"emb:0"][0], False)}
    assert after["pg"] == before["pg"] and after["qdrant"] == {"aliases": [], "collections": {}}
    [record] = omnilab.Run.load(run.id).promotions
    states = {i.plan.kind: i.state for i in record.items}
    assert states == {
        "postgres_table": "reverted",
        "qdrant_collection": "reverted",
        "redis_keys": "failed",
    }


def test_a_reader_holding_a_lock_makes_the_switch_give_up_cleanly(
    production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_production(production)
    run = run_promotable()
    monkeypatch.setenv("OMNILAB_PROMOTE_LOCK_TIMEOUT", "0.5")
    before = production.snapshot()
    with psycopg.connect(production.postgres_url) as reader:
        reader.execute("SELECT count(*) FROM scores")  # the transaction holds ACCESS SHARE
        began = time.monotonic()
        with pytest.raises(PromotionFailed, match="lock timeout"):
            promote(run.id, on_conflict="replace", reporter=Q)
        assert time.monotonic() - began < 30
        reader.rollback()
    assert production.snapshot() == before
