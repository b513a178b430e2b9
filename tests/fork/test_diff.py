"""The diff at promotion of a forked run, and the check that production did not change
since the fork: counts and examples per service, the refusal when production moved, the
fast-forward when it did not, ``run.diff()``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from qdrant_client import models

import omnilab
from omnilab.config import get_settings
from omnilab.errors import UsageError
from omnilab.fork import Fork
from omnilab.progress import QuietReporter
from omnilab.promote import PostgresTable, PromotionConflict, RedisKeys
from omnilab.resources import Bounds
from tests.support import EXPERIMENTS, run_cli
from tests.support.promotion_support import Production

FORKED = f"{EXPERIMENTS / 'forked.py'}:ForkedAndPromoted"


def fill(prod: Production) -> None:
    """Ten users, eight keys, twenty points: what ``ForkedAndPromoted`` starts from."""
    with prod.pg() as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, active boolean)")
        conn.execute(
            "INSERT INTO users SELECT i, 'user ' || i, i % 2 = 0 FROM generate_series(1, 10) i"
        )
    r = prod.redis()
    r.set("emb:0", "zero")
    r.hset("emb:1", mapping={"a": "1", "b": "2"})
    r.rpush("emb:2", "x", "y")
    for i in range(3, 8):
        r.set(f"emb:{i}", f"value {i}")
    r.set("other", "not part of it")
    r.close()
    q = prod.qdrant()
    try:
        q.create_collection(
            "docs", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
        )
        q.upsert(
            "docs",
            [
                models.PointStruct(id=i, vector=[1.0, i, 0.5, -i], payload={"kind": f"k{i}"})
                for i in range(20)
            ],
        )
    finally:
        q.close()


def forked_run(prod: Production) -> omnilab.Run:
    fill(prod)
    run = omnilab.run(FORKED, reporter=QuietReporter())
    assert run.ok, run.error
    assert run.record.seeds is not None and len(run.record.seeds) == 3
    return run


def test_the_plan_shows_each_items_diff_exactly_and_production_is_untouched(
    production: Production,
) -> None:
    run = forked_run(production)
    before = production.snapshot()
    plan = run.promote(dry_run=True, reporter=QuietReporter())
    items = {i.plan.service: i.plan for i in plan.items}
    pg, redis, qdrant = items["postgres"].diff, items["redis"].diff, items["qdrant"].diff
    assert pg is not None and redis is not None and qdrant is not None
    assert (pg.added, pg.changed, pg.removed) == (2, 3, 1)
    assert pg.by == "primary key (id)"
    assert pg.incremental, pg.notes  # production unchanged: the rows the run wrote only
    assert pg.examples == {
        "added": ["id=101", "id=102"],
        "changed": ["id=3", "id=5", "id=7"],
        "removed": ["id=10"],
    }
    assert (redis.added, redis.changed, redis.removed) == (2, 2, 1)
    assert redis.examples == {
        "added": ["emb:new1", "emb:new2"],
        "changed": ["emb:1", "emb:2"],
        "removed": ["emb:3"],
    }
    assert (qdrant.added, qdrant.changed, qdrant.removed) == (2, 3, 2)
    assert qdrant.examples == {
        "added": ["100", "101"],
        "changed": ["4", "5", "6"],
        "removed": ["7", "8"],
    }
    # Production unchanged since the fork: each whole-item seed is a fast-forward.
    for plan_item in items.values():
        assert plan_item.since_fork is not None
        assert plan_item.since_fork.changed is False
        assert plan_item.since_fork.decision == "fast-forward"
        assert plan_item.action == "replace"
    # The CLI's plan shows the same, and its JSON carries it.
    shown = run_cli("promote", run.id[:8], "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert "id=101, id=102" in shown.stdout and "emb:new1" in shown.stdout, shown.stdout
    assert "production unchanged since the fork (fast-forward)" in shown.stdout, shown.stdout
    words = " ".join(shown.stdout.split())  # the lines wrap at the terminal's width
    assert "diff postgres table users: compared since the fork: the 5 rows the run" in words
    assert production.snapshot() == before
    # What --json and the API return: the same plan, diffs included.
    data = json.loads(plan.model_dump_json())
    assert [i["plan"]["diff"]["removed"] for i in data["items"]] == [1, 1, 2]


def test_production_changed_since_the_fork_refuses_the_promotion_naming_it(
    production: Production,
) -> None:
    run = forked_run(production)
    with production.pg() as conn:  # someone else's work, meanwhile
        conn.execute("INSERT INTO users VALUES (500, 'written meanwhile', true)")
    before = production.snapshot()
    refused = run_cli("promote", run.id[:8])
    assert refused.returncode == 2, refused.stdout + refused.stderr
    error = refused.stderr.strip().splitlines()[-1]
    assert "production's public.users changed since the fork" in error, error
    assert "10 rows at fork, 11 now" in error, error
    assert "--on-conflict replace" in error, error
    assert production.snapshot() == before
    # The diff is against production as it is now: the row written meanwhile is removed.
    with pytest.raises(PromotionConflict, match="changed since the fork"):
        run.promote(reporter=QuietReporter())
    diff = run.diff().rows()
    users = next(r for r in diff if r["item"] == "postgres table users")
    assert (users["added"], users["changed"], users["removed"]) == (2, 3, 2)
    assert users["removed_examples"] == ["id=10", "id=500"]
    assert users["changed_since_fork"] is True
    assert production.snapshot() == before
    # Going on regardless: proceeds as today, and the record keeps the decision.
    done = run.promote(on_conflict="replace", reporter=QuietReporter())
    assert done.status == "succeeded", done.error
    with production.pg() as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id")]
    assert ids == [1, 2, 3, 4, 5, 6, 7, 8, 9, 101, 102]
    record = run.promotions[0]
    decisions = {i.plan.service: i.plan.since_fork for i in record.items}
    assert decisions["postgres"] is not None and decisions["postgres"].decision == "replace"
    assert decisions["postgres"].changed is True
    assert decisions["redis"] is not None and decisions["redis"].changed is False


def test_unchanged_production_is_a_fast_forward_with_the_default_on_conflict(
    production: Production,
) -> None:
    run = forked_run(production)
    done = run.promote(reporter=QuietReporter())
    assert done.status == "succeeded", done.error
    assert {i.plan.since_fork.decision for i in done.items if i.plan.since_fork} == {"fast-forward"}
    r = production.redis()
    try:
        assert r.get(b"emb:new1") == b"n1" and not r.exists(b"emb:3")
        assert r.get(b"other") == b"not part of it"
    finally:
        r.close()


def test_run_diff_is_a_table_with_html(production: Production) -> None:
    run = forked_run(production)
    diff = run.diff()
    rows = {r["item"]: r for r in diff.rows()}
    assert rows["redis keys emb:*"]["added"] == 2
    assert rows["qdrant collection docs"]["removed_examples"] == ["7", "8"]
    html = diff._repr_html_()
    assert "diff against production" in html
    assert "id=101, id=102" in html and "unchanged" in html
    try:
        import pandas  # noqa: F401
    except ImportError:
        from omnilab.notebook.frames import MissingDependency

        with pytest.raises(MissingDependency, match="pandas"):
            diff.to_pandas()
    else:
        frame = diff.to_pandas()
        assert list(frame["changed"]) == [3, 2, 3]


def test_a_fork_that_would_not_fit_is_refused_before_copying(production: Production) -> None:
    with production.pg() as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, body text)")
        conn.execute(
            "INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 20000) i"
        )
    r = production.redis()
    r.mset({f"blob:{i}": "x" * 1000 for i in range(500)})
    r.close()
    settings = get_settings()
    quiet = QuietReporter()
    with pytest.raises(UsageError) as refused:
        Fork.prepare(
            [PostgresTable("big")], settings, quiet, bounds={"postgres": Bounds(disk=1 << 20)}
        )
    line = str(refused.value)
    assert "\n" not in line
    assert re.fullmatch(
        r"seed postgres table big: about [\d.]+ MiB would not fit the postgres service's "
        r"disk bound \(1 MiB\); .*",
        line,
    ), line
    with pytest.raises(UsageError, match=r"seed redis keys blob:\*: about [\d.]+ KiB .*memory"):
        Fork.prepare(
            [RedisKeys("blob:*")], settings, quiet, bounds={"redis": Bounds(memory=100 << 10)}
        )
    # A tenth of the table fits the same bound; the free disk of a real folder fits both.
    Fork.prepare(
        [PostgresTable("big", sample=0.1)],
        settings,
        quiet,
        bounds={"postgres": Bounds(disk=1 << 20)},
    ).close()
    Fork.prepare(
        [PostgresTable("big"), RedisKeys("blob:*")], settings, quiet, folder=Path.cwd()
    ).close()
    # Before copying: production holds only what it held, and no stack was started.
    with production.pg() as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (20000,)


def test_services_fork_at_once_and_one_failing_stops_the_others(
    production: Production, capfd: pytest.CaptureFixture[str]
) -> None:
    """The services are copied at once, one thread each; when one fails (here the run's
    Redis refuses the copy: its memory is full) the error is that one's, the others stop
    (the table's copy, seconds long, is cut off: its loading transaction never commits),
    and no copy is still writing into the stack once ``copy`` has raised."""
    import threading

    from omnilab import Postgres, Redis, Stack
    from omnilab.services.forking import ForkFailed

    with production.pg() as conn:
        conn.execute("CREATE TABLE wide (id int PRIMARY KEY, v text NOT NULL)")
        conn.execute(
            "INSERT INTO wide SELECT i, repeat(md5(i::text), 6) FROM generate_series(1, 1500000) i"
        )
    r = production.redis()
    with r.pipeline(transaction=False) as pipe:
        for i in range(3000):
            pipe.set(f"big:{i}", "y" * 2000)
        pipe.execute()
    r.close()
    quiet = QuietReporter()
    with Stack(Postgres(), Redis(decode_responses=False), runtime="local", reporter=quiet) as run:
        run.redis.config_set("maxmemory", "2mb")
        run.redis.config_set("maxmemory-policy", "noeviction")
        seeds = [PostgresTable("wide"), RedisKeys("big:*")]
        fork = Fork.prepare(seeds, get_settings(), quiet)
        with pytest.raises(ForkFailed, match=r"seed redis keys big:\*: the run's Redis refused"):
            fork.copy(run)
        assert not [t for t in threading.enumerate() if t.name.startswith("omnilab-fork")]
        assert run.postgres.execute("SELECT count(*) FROM wide").fetchone() == (0,)
    assert "Traceback" not in capfd.readouterr().err
