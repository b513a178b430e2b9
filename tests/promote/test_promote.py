"""Promotion from Python: plan, copy, verify, switch, record, idempotence, conflicts,
rollback; all against real servers (production apart from the run's own stack)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import omnilab
from omnilab.progress import QuietReporter
from omnilab.promote import PromotionConflict, PromotionFailed, promote, rollback
from tests.support.promotion_support import EXPERIMENT, Production, run_promotable, seed_production

Q = QuietReporter()


def test_dry_run_plans_and_changes_nothing(production: Production) -> None:
    run = run_promotable(n_points=12, n_keys=18, n_rows=40)
    before = production.snapshot()
    plan = run.promote(dry_run=True, reporter=Q)
    assert plan.status == "planned" and plan.dry_run and plan.id is None
    by_kind = {i.plan.kind: i.plan for i in plan.items}
    assert by_kind["qdrant_collection"].action == "create"
    assert by_kind["qdrant_collection"].source_count == 12
    assert by_kind["redis_keys"].source_count == 18  # other:key does not match emb:*
    assert by_kind["postgres_table"].source_count == 40
    assert by_kind["postgres_table"].size_bytes and by_kind["postgres_table"].size_bytes > 0
    assert all(i.plan.action == "create" for i in plan.items)
    json.dumps(plan.model_dump(mode="json"))  # the API's answer
    assert production.snapshot() == before
    assert Path(run.data["path"]).is_dir() and run.data["state"] == "kept"


def test_promote_copies_values_ttls_schema_and_records_it(production: Production) -> None:
    run = run_promotable(n_points=15, n_keys=24, n_rows=50, seed=3)
    result = promote(run.id, reporter=Q)
    assert result.status == "succeeded" and result.id
    # Redis: every type, values and TTLs.
    r = production.redis()
    assert sorted(r.scan_iter("emb:*")) == sorted(f"emb:{i}".encode() for i in range(24))
    assert r.get("emb:0") == b"3-0-"
    assert r.hgetall("emb:1") == {b"a": b"1", b"b": b"v3", b"c": b"1.5"}
    assert r.lrange("emb:2", 0, -1) == [b"3", b"2", b"three"]
    assert r.smembers("emb:3") == {b"x", b"y", b"6"}
    assert r.zrange("emb:4", 0, -1, withscores=True) == [(b"m1", 1.0), (b"m4", 5.5)]
    assert r.xrange("emb:5")[0][1] == {b"f": b"5", b"seed": b"3"}
    assert 3500 < r.ttl("emb:1") <= 3601 and r.ttl("emb:0") == -1
    assert r.get("other:key") is None and not list(r.scan_iter("omnilab:*"))
    r.close()
    # PostgreSQL: rows, constraints, indexes, a sequence that goes on.
    with production.pg() as conn:
        assert conn.execute("SELECT count(*), min(score) FROM scores").fetchone() == (50, 3.7)
        defs = {r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 's"
                                           "cores'")}  # fmt: skip
        assert any("UNIQUE INDEX scores_pkey" in d for d in defs)
        assert any("scores_score_idx" in d for d in defs)
        new_id = conn.execute("INSERT INTO scores (name) VALUES ('new') RETURNING id").fetchone()
        assert new_id == (51,)  # the sequence goes on where the run's stopped
        with pytest.raises(Exception, match="scores_score_check"):
            conn.execute("INSERT INTO scores (name, score) VALUES ('neg', -1)")
        schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")]
        assert not [s for s in schemas if s.startswith("omnilab")]
    # Qdrant: an alias named like the collection, the same points.
    points = production.points("docs")
    assert len(points) == 15
    assert points[7].payload == {"title": "doc 7", "seed": 3, "tags": ["a", "1"]}
    # Recorded: who, when, counts and checksums (source = target), the run's data released.
    [record] = run.promotions
    assert record.id == result.id and record.status == "succeeded" and record.actor
    for item in record.items:
        assert item.state == "switched"
        assert item.counts["source"] == item.counts["target"] > 0
        assert item.checksums["source"] and item.checksums["target"]
    text = json.dumps(record.model_dump(mode="json"))
    for url in (production.redis_url, production.postgres_url):
        password = urlsplit(url).password
        assert password and password not in text
    run = omnilab.Run.load(run.id)
    assert run.data["state"] == "promoted" and not Path(run.data["path"]).exists()


def test_promoting_twice_is_nothing_to_do(production: Production) -> None:
    run = run_promotable()
    assert promote(run.id, reporter=Q).status == "succeeded"
    after_first = production.snapshot()
    again = promote(run.id, reporter=Q)
    assert again.status == "nothing_to_do" and again.id is None
    assert all(i.plan.action == "nothing" for i in again.items)
    assert production.snapshot() == after_first
    assert len(omnilab.Run.load(run.id).promotions) == 1


def test_identical_data_from_another_run_is_nothing_to_do(production: Production) -> None:
    assert promote(run_promotable(seed=5).id, reporter=Q).status == "succeeded"
    twin = run_promotable(seed=5)
    result = promote(twin.id, reporter=Q)
    assert result.status == "nothing_to_do"
    assert {i.plan.reason for i in result.items} >= {"production already holds these keys"}


def test_a_collision_fails_by_default_and_changes_nothing(production: Production) -> None:
    seed_production(production)
    run = run_promotable()
    before = production.snapshot()
    plan = run.promote(dry_run=True, reporter=Q)
    assert [i.plan.action for i in plan.items] == ["conflict"] * 3
    with pytest.raises(PromotionConflict) as info:
        promote(run.id, reporter=Q)
    assert isinstance(info.value, omnilab.UsageError)
    assert info.value.result.status == "refused"
    assert "use --on-conflict replace or version" in str(info.value)
    assert production.snapshot() == before
    assert omnilab.Run.load(run.id).data["state"] == "kept"


def test_replace_then_rollback_restores_production_exactly(production: Production) -> None:
    seed_production(production)
    before = production.snapshot()
    run = run_promotable(n_keys=12)
    plan = {i.plan.kind: i.plan for i in run.promote(dry_run=True, on_conflict="replace").items}
    redis_plan = plan["redis_keys"]
    assert redis_plan.action == "replace"
    assert redis_plan.details["deleted"] == 1 and redis_plan.details["overwritten"] == 2
    assert "not atomic" in " ".join(plan["qdrant_collection"].notes)
    result = promote(run.id, on_conflict="replace", reporter=Q)
    assert result.status == "succeeded"
    r = production.redis()
    assert r.get("emb:only-in-production") is None and r.get("unrelated") == b"keep me"
    assert r.get("emb:0") == b"0-0-"
    r.close()
    with production.pg() as conn:
        assert conn.execute("SELECT count(*) FROM scores").fetchone() == (100,)
        assert conn.execute("SELECT * FROM unrelated").fetchall() == [(42,)]
        granted = "SELECT has_table_privilege('reader', 'public.scores', 'SELECT')"
        assert conn.execute(granted).fetchone() == (True,)
    assert production.points("unrelated")[1].payload == {"prod": "unrelated"}
    undone = rollback(result.id, reporter=Q)
    assert undone.status == "rolled_back"
    # Exactly as before: Qdrant's docs a collection again (no alias), with its points,
    # configuration and indexes; omnilab's copies gone.
    assert production.snapshot() == before
    assert [r.status for r in omnilab.Run.load(run.id).promotions] == ["rolled_back"]


def test_replacing_an_alias_switches_atomically_and_rolls_back(production: Production) -> None:
    first = run_promotable(seed=1)
    promote(first.id, reporter=Q)
    second = run_promotable(seed=2, n_points=9)
    before = production.snapshot()
    plan = {i.plan.kind: i.plan for i in second.promote(dry_run=True, on_conflict="replace").items}
    assert plan["qdrant_collection"].notes == []  # an alias now: no gap
    result = promote(second.id, on_conflict="replace", reporter=Q)
    assert len(production.points("docs")) == 9
    with pytest.raises(omnilab.UsageError, match="later promotions"):
        rollback(first.promotions[0].id if first.promotions else "", reporter=Q)
    rollback(result.id, reporter=Q)
    assert production.snapshot() == before


def test_version_promotes_beside_and_leaves_the_original(production: Production) -> None:
    seed_production(production)
    run = run_promotable()
    before = production.snapshot()
    result = promote(run.id, on_conflict="version", reporter=Q)
    targets = {i.plan.kind: i.plan.target for i in result.items}
    assert targets == {
        "qdrant_collection": "docs_v2",
        "redis_keys": "emb_v2:*",
        "postgres_table": "public.scores_v2",
    }
    after = production.snapshot()
    assert after["pg"]["tables"]["public.scores"] == before["pg"]["tables"]["public.scores"]
    assert {k: v for k, v in after["redis"].items() if not k.startswith(b"emb_v2:")} == before[
        "redis"
    ]
    with production.pg() as conn:
        assert conn.execute("SELECT count(*) FROM scores_v2").fetchone() == (100,)
        assert "scores_v2_pkey" in {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
    assert promote(run.id, on_conflict="version", reporter=Q).status == "nothing_to_do"


def test_rollback_refuses_when_production_changed_unless_forced(production: Production) -> None:
    run = run_promotable()
    result = promote(run.id, reporter=Q)
    r = production.redis()
    r.set("emb:0", "changed by production")
    r.close()
    with pytest.raises(omnilab.UsageError, match=r"production changed since promotion .*emb:\*"):
        rollback(result.id, reporter=Q)
    rollback(result.id, force=True, reporter=Q)
    r = production.redis()
    assert not list(r.scan_iter("emb:*"))
    r.close()
    with production.pg() as conn:
        assert conn.execute("SELECT to_regclass('public.scores')").fetchone() == (None,)
    with pytest.raises(omnilab.UsageError, match="already rolled back"):
        rollback(result.id, reporter=Q)


def test_promotion_after_release_detects_a_changed_production(production: Production) -> None:
    run = run_promotable()
    promote(run.id, reporter=Q)
    with production.pg() as conn:
        conn.execute("DELETE FROM scores WHERE id = 1")
    with pytest.raises(PromotionFailed, match=r"production's public.scores changed since"):
        promote(run.id, reporter=Q)


def test_discard_removes_the_kept_data(production: Production) -> None:
    run = run_promotable()
    path = Path(run.data["path"])
    assert (path / "credentials.json").stat().st_mode & 0o777 == 0o600
    run.discard(reporter=Q)
    assert not path.exists() and run.data["state"] == "discarded"
    with pytest.raises(omnilab.UsageError, match="was discarded: there is nothing left"):
        promote(run.id, reporter=Q)
    with pytest.raises(omnilab.UsageError, match="already discarded"):
        run.discard(reporter=Q)


def test_failed_runs_keep_no_data(production: Production, workdir: Path) -> None:
    run = omnilab.run(EXPERIMENT, params={"fail": True}, reporter=Q)
    assert run.status == "failed" and run.data is None
    assert not list((workdir / "data" / "experiments").glob("*"))
    with pytest.raises(omnilab.UsageError, match="only a succeeded run can be promoted"):
        promote(run.id, reporter=Q)


def test_expired_data_is_removed_by_the_next_run(
    production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNILAB_RETENTION_DAYS", "0.00001")  # under a second
    old = run_promotable()
    assert old.data["expires_at"]
    import time

    time.sleep(1.0)
    new = run_promotable()
    old = omnilab.Run.load(old.id)
    assert old.data["state"] == "expired" and not Path(old.data["path"]).exists()
    assert Path(new.data["path"]).exists()


def test_run_with_promote_respects_accept(production: Production) -> None:
    declined = omnilab.run(EXPERIMENT, params={"accept": False}, promote=True, reporter=Q)
    assert declined.ok and declined.promotion.status == "declined"
    assert declined.data["state"] == "kept"
    accepted = omnilab.run(EXPERIMENT, params={"seed": 4}, promote=True, reporter=Q)
    assert accepted.promotion.status == "succeeded"
    assert omnilab.Run.load(accepted.id).data["state"] == "promoted"


def test_bad_declarations_are_refused_before_anything_starts(
    production: Production, workdir: Path
) -> None:
    from omnilab import Experiment, Redis
    from omnilab.promote import PostgresTable, RedisKeys

    class NoPostgres(Experiment):
        services = [Redis()]
        promotes = [RedisKeys("a:*"), PostgresTable("t")]

        def run(self, ctx):  # refused before it could run: the declarations
            return {}

    class NotAnItem(Experiment):
        services = [Redis()]
        promotes = ["a:*"]

        def run(self, ctx):  # refused before it could run: the declarations
            return {}

    class Twice(Experiment):
        services = [Redis()]
        promotes = [RedisKeys("a:*"), RedisKeys("a:*")]

        def run(self, ctx):  # refused before it could run: the declarations
            return {}

    with pytest.raises(omnilab.UsageError, match=r"needs the postgres service; add Postgres\(\)"):
        omnilab.run(NoPostgres, reporter=Q)
    with pytest.raises(omnilab.UsageError, match="'a:\\*' is not promotable"):
        omnilab.run(NotAnItem, reporter=Q)
    with pytest.raises(omnilab.UsageError, match="write the same production item"):
        omnilab.run(Twice, reporter=Q)
    for reserved in ("omnilab:staging:x", "omnilab:replaced:*", "rq:queue:*"):
        with pytest.raises(omnilab.UsageError, match="are omnilab's and rq's own"):
            RedisKeys(reserved)
    with pytest.raises(omnilab.UsageError, match="target_prefix 'rq:' is not usable"):
        RedisKeys("emb:*", target_prefix="rq:")
    with pytest.raises(omnilab.UsageError, match="--on-conflict 'merge'"):
        omnilab.run(EXPERIMENT, promote=True, on_conflict="merge", reporter=Q)
    assert not (workdir / "runs").exists()


def test_refuses_when_the_environment_is_the_experiments_one(
    production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_promotable()
    monkeypatch.setenv("ENVIRONMENT", "docker_experiments")
    with pytest.raises(omnilab.UsageError, match="not at production"):
        promote(run.id, reporter=Q)


def test_rows_are_relayed_through_omnilab_without_psql(
    production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no psql is installed, the rows stream through psycopg: same result."""
    from omnilab.services.postgres import rows as postgres_copy

    monkeypatch.setattr(postgres_copy, "psql_binary", lambda: None)
    run = run_promotable(n_rows=5000)
    result = promote(run.id, reporter=Q)
    table = next(i for i in result.items if i.plan.kind == "postgres_table")
    assert table.counts == {"source": 5000, "target": 5000}
    with production.pg() as conn:
        assert conn.execute("SELECT count(*), max(id) FROM scores").fetchone() == (5000, 5000)


def test_a_pattern_never_touches_the_run_queue(production: Production) -> None:
    """rq's keys live in production Redis (the queue shares REDIS_URL): `*` replaces the
    data keys and leaves the queue's alone, in the plan and in production."""
    prod = production.redis()
    prod.set("rq:queue:omnilab", "queued work")
    prod.set("old", "production value")
    everything = str(Path(EXPERIMENT).with_name("promote_everything.py"))
    run = omnilab.run(everything, reporter=Q)
    assert run.ok, run.error
    [item] = run.promote(dry_run=True, on_conflict="replace", reporter=Q).items
    assert item.plan.action == "replace" and item.plan.source_count == 2
    assert promote(run.id, on_conflict="replace", reporter=Q).status == "succeeded"
    assert prod.get("rq:queue:omnilab") == b"queued work"
    assert prod.get("a") == b"1" and prod.lrange("b", 0, -1) == [b"x", b"y"]
    assert prod.get("old") is None  # replaced, as planned, and kept for rollback
    assert [k for k in prod.scan_iter("omnilab:replaced:*") if k.endswith(b":old")]
    prod.close()
