"""A promotion whose process is killed is finished by the next omnilab process; one
interrupted (Ctrl-C) undoes itself.

Each test stops a real ``omnilab promote`` at a named step (``OMNILAB_PROMOTE_PAUSE_AT``:
the process says so on stderr and waits there) and kills it with SIGKILL (or sends it
SIGINT), so the moment is known without racing the copy. Once committed (every item
staged and verified) the promotion is rolled forward; before that, it is undone and what
it staged is removed.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import pytest

import omnilab
from omnilab.progress import QuietReporter
from omnilab.promote import PromotionRecord, promote
from tests.promote.test_failures import visible
from tests.support import paused_at, run_cli, stack_processes, wait_until
from tests.support.promotion_support import Production, run_promotable, seed_production
from tests.support.queue_helpers import FAST, spawn_worker, start_api


def said_promotion(run_id: str, said: list[str]) -> PromotionRecord:
    """The record of the promotion whose first line (``promotion <id> of run ...``) was
    said."""
    [short] = [w[1] for w in map(str.split, said) if w[:1] == ["promotion"] and w[2:3] == ["of"]]
    return promotion(run_id, short)


def promote_killed_at(run_id: str, step: str) -> PromotionRecord:
    """``omnilab promote RUN --on-conflict replace`` killed with SIGKILL at ``step``;
    returns its record."""
    with paused_at(step, "promote", run_id, "--on-conflict", "replace") as (proc, said):
        proc.send_signal(signal.SIGKILL)  # no cleanup of its own is possible
        proc.wait(timeout=10)
    return said_promotion(run_id, said)


def promotion(run_id: str, ref: str) -> PromotionRecord:
    [record] = [r for r in omnilab.Run.load(run_id).promotions if r.id.startswith(ref)]
    return record


def holds_run(production: Production, seed: int) -> dict[str, bool]:
    """Which items production's readers find to be the run's (of that ``seed``)."""
    client = production.redis()
    try:
        keys = client.get("emb:0") == f"{seed}-0-".encode()
    finally:
        client.close()
    with production.pg() as conn:
        row = conn.execute("SELECT score FROM scores WHERE name = 'row 1'").fetchone()
    points = production.points("docs")
    return {
        "postgres": row == (0.7 + seed,),
        "qdrant": {p.payload["seed"] for p in points.values()} == {seed},
        "redis": keys,
    }


def test_killed_between_switches_is_rolled_forward_then_rolled_back(
    production: Production, workdir: Path
) -> None:
    """The issue's case: killed after the PostgreSQL switch, then `omnilab rollback`."""
    first = run_promotable(seed=1)
    promote(first.id, reporter=QuietReporter())
    second = run_promotable(seed=2)
    before = production.snapshot()
    killed = promote_killed_at(second.id, "switched:postgres")
    # Until someone finishes it, readers see the new table beside the old keys and points.
    assert holds_run(production, 2) == {"postgres": True, "qdrant": False, "redis": False}
    assert killed.status == "running" and killed.committed_at
    assert wait_until(lambda: not stack_processes(workdir / "data"), timeout=15)
    back = run_cli("rollback", killed.short_id)
    assert back.returncode == 0, back.stdout + back.stderr
    assert f"promotion {killed.short_id} had been interrupted" in back.stderr
    record = promotion(second.id, killed.id)
    assert record.status == "rolled_back" and record.recovered
    assert "rolled forward" in record.recovered
    assert "switched qdrant collection docs, redis keys emb:*" in record.recovered
    assert "(switched before it ended: postgres table scores)" in record.recovered
    assert production.snapshot() == before


def test_the_api_rolls_a_killed_promotion_forward_within_seconds(
    production: Production, workdir: Path
) -> None:
    run = run_promotable(seed=3)
    api = start_api(workdir, {**FAST, "REDIS_URL": production.redis_url})
    try:
        killed = promote_killed_at(run.id, "switched:qdrant")
        gone = time.monotonic()
        finished = wait_until(
            lambda: promotion(run.id, killed.id).status == "succeeded", timeout=30, interval=0.1
        )
        took = time.monotonic() - gone
        assert finished, api.service.output
    finally:
        api.service.stop()
    # A reconcile every 0.5 s (FAST), then loading qdrant-client and three connections, on
    # shared cores: a few seconds.
    assert took < 15, f"rolled forward {took:.1f}s after the kill"
    assert holds_run(production, 3) == {"postgres": True, "qdrant": True, "redis": True}
    record = promotion(run.id, killed.id)
    assert {i.state for i in record.items} == {"switched"} and record.error is None
    assert record.recovered and "switched redis keys emb:*" in record.recovered
    before_it_ended = "(switched before it ended: postgres table scores, qdrant collection docs)"
    assert before_it_ended in record.recovered
    assert wait_until(lambda: not stack_processes(workdir / "data"), timeout=15)


def test_the_next_promotion_rolls_a_killed_one_forward_first(
    production: Production, workdir: Path
) -> None:
    """Committed, then killed: the next `omnilab promote` (of another run) finishes it
    under the promotion lock before it plans its own."""
    promote(run_promotable(seed=7).id, reporter=QuietReporter())
    first = run_promotable(seed=4)
    killed = promote_killed_at(first.id, "switched:postgres")
    assert holds_run(production, 4) == {"postgres": True, "qdrant": False, "redis": False}
    second = run_promotable(seed=5)
    done = run_cli("promote", second.id, "--on-conflict", "replace")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"promotion {killed.short_id} had been interrupted" in done.stderr
    record = promotion(first.id, killed.id)
    assert record.status == "succeeded" and record.recovered
    assert "rolled forward" in record.recovered
    assert "(switched before it ended: postgres table scores)" in record.recovered
    assert holds_run(production, 5) == {"postgres": True, "qdrant": True, "redis": True}


def test_a_worker_rolls_a_killed_promotion_forward_within_seconds(
    production: Production, workdir: Path
) -> None:
    """What the API does, every `omnilab worker` does too (the same sweep), with nobody
    asking."""
    run = run_promotable(seed=6)
    env = {**FAST, "REDIS_URL": production.redis_url, "OMNILAB_EXPERIMENTS_DIR": str(workdir)}
    worker = spawn_worker(workdir, env, "--concurrency", "1")
    try:
        killed = promote_killed_at(run.id, "switched:postgres")
        finished = wait_until(
            lambda: promotion(run.id, killed.id).status == "succeeded", timeout=30, interval=0.1
        )
        assert finished, worker.output
    finally:
        worker.stop()
    assert holds_run(production, 6) == {"postgres": True, "qdrant": True, "redis": True}
    record = promotion(run.id, killed.id)
    assert record.recovered and "rolled forward" in record.recovered
    assert f"promotion {killed.short_id} had been interrupted" in worker.output


def test_killed_during_the_qdrant_copy_leaves_no_collection_behind(
    production: Production, workdir: Path
) -> None:
    seed_production(production)  # production's docs is a collection: copied aside first
    run = run_promotable(n_points=600)
    before = production.snapshot()
    killed = promote_killed_at(run.id, "copying:qdrant")
    assert killed.status == "running" and not killed.committed_at
    tag = killed.id[:12]
    staged = production.snapshot()["qdrant"]["collections"]
    # The copy aside is complete; the run's copy stopped after its first step (a batch of
    # points, or the whole shard snapshot where both sides are servers on this host).
    copied = len(staged[f"docs__omnilab_{tag}"]["points"])
    assert 0 < copied <= 600
    assert len(staged[f"docs__omnilab_replaced_{tag}"]["points"]) == 1
    assert visible(production.snapshot()) == visible(before)
    assert wait_until(lambda: not stack_processes(workdir / "data"), timeout=15)
    recovered = run_cli("promotions", "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert production.snapshot() == before
    record = promotion(run.id, killed.id)
    assert record.status == "failed" and not record.committed_at and record.recovered
    assert record.recovered.endswith(
        f"removed qdrant collection docs__omnilab_{tag} ({copied} points), "
        f"qdrant collection docs__omnilab_replaced_{tag} (1 point)"
    ), record.recovered
    assert record.short_id in recovered.stdout and f"({copied} points)" in recovered.stdout


def test_ctrl_c_during_the_qdrant_copy_undoes_it_without_waiting_for_the_source_read(
    production: Production, workdir: Path
) -> None:
    """Ctrl-C while the run's collection is read for its checksum (the shards moving
    beside it): the promotion is undone at once and production is as it was. The read
    is held at its pause point: waited for, the command would never end."""
    seed_production(production)
    run = run_promotable(n_points=600)
    before = production.snapshot()
    with paused_at("reading:qdrant", "promote", run.id, "--on-conflict", "replace") as (
        proc,
        said,
    ):
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    text = "".join(said) + rest
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert production.snapshot() == before
    record = said_promotion(run.id, said)
    assert record.status == "failed" and not record.committed_at, record
    assert record.error == "interrupted", record.error


def test_a_reconciler_for_another_production_says_once_why_it_leaves_a_promotion(
    production: Production, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An API or worker configured for another production cannot finish a promotion
    made against this one: it says so in its log, once, naming the promotion, instead
    of skipping it without a word at every sweep."""
    from omnilab.config import get_settings
    from omnilab.queue.broker import Broker
    from omnilab.queue.reconcile import Reconciler
    from omnilab.redact import secrets_of
    from omnilab.tracking.store import TrackingStore

    run = run_promotable(seed=5)
    killed = promote_killed_at(run.id, "switched:postgres")
    elsewhere = "redis://:other-production-secret@127.0.0.1:1/0"
    reconciler = Reconciler(Broker(production.redis_url, "omnilab"), worker_ttl=30, resend_after=2)
    reconciler._settings = get_settings().model_copy(update={"redis_url": elsewhere})
    with TrackingStore.open() as store, caplog.at_level(logging.WARNING, "omnilab.queue"):
        for _ in range(3):
            reconciler._finish_promotions(store)
    said = [r.getMessage() for r in caplog.records if killed.short_id in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "not the production configured here" in said[0]
    assert "omnilab promotions recover" in said[0]
    for secret in ["other-production-secret", *secrets_of(production.redis_url)]:
        assert secret not in caplog.text
    assert promotion(run.id, killed.id).status == "running"
    # A process configured for that production finishes it.
    finished = run_cli("promotions", "recover")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert promotion(run.id, killed.id).status == "succeeded"
    assert wait_until(lambda: not stack_processes(workdir / "data"), timeout=15)
