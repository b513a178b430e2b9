"""Promotions, rollbacks and discards of data kept on another host, handed to that
host's worker (omnilab.queue.hosttasks). Two hosts on this machine: processes with
different OMNILAB_HOST values (the API on host-a, workers on host-b and host-c)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import omnilab
from tests.support import API_EXPERIMENTS, run_cli, wait_until
from tests.support.promotion_support import Production, run_promotable, seed_production
from tests.support.queue_helpers import FAST, Service, make_key, spawn_worker, start_api

A, B, C = "host-a", "host-b", "host-c"


def _env(production: Production, **extra: str) -> dict[str, str]:
    # The queue shares production's Redis, as in OmniMind's setup (REDIS_URL).
    return {
        **FAST,
        "REDIS_URL": production.redis_url,
        "OMNILAB_EXPERIMENTS_DIR": str(API_EXPERIMENTS),
        **extra,
    }


def _kept_on(host: str, monkeypatch: pytest.MonkeyPatch, **params: Any) -> omnilab.Run:
    """A promotable run whose stack data is kept on ``host``."""
    with monkeypatch.context() as patch:
        patch.setenv("OMNILAB_HOST", host)
        run = run_promotable(**params)
    assert run.data is not None and run.data["host"] == host and run.data["state"] == "kept"
    return run


def _worker(workdir: Path, production: Production, host: str, **extra: str) -> Service:
    return spawn_worker(workdir, _env(production, OMNILAB_HOST=host, **extra), "--concurrency", "1")


def _scores(production: Production) -> int | None:
    with production.pg() as conn:
        exists = conn.execute("SELECT to_regclass('public.scores')").fetchone()
        if exists is None or exists[0] is None:
            return None
        row = conn.execute("SELECT count(*) FROM scores").fetchone()
        return int(row[0]) if row else 0


def _gist(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("label", "target", "action", "reason", "unit", "source_count", "target_count")
    return {
        **{k: v for k, v in result.items() if k not in ("items", "seconds")},
        "items": [
            {"item": i["item"], "state": i["state"], **{k: i["plan"][k] for k in keep}}
            for i in result["items"]
        ],
    }


def test_the_host_that_keeps_the_data_promotes_and_rolls_back(
    production: Production, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _kept_on(B, monkeypatch)
    data_path = Path(run.data["path"])  # type: ignore[index]
    assert data_path.is_dir()
    api = start_api(workdir, _env(production, OMNILAB_HOST=A))
    worker = _worker(workdir, production, B)
    try:
        assert "omnilab@host-b/tasks" in worker.output
        with api.client(key=make_key("promote", "read", env=api.env)) as client:
            # The plan reopens the run's stack: on host-b too.
            plan = client.post(f"/v1/runs/{run.id}/promote", json={"dry_run": True})
            assert plan.status_code == 200, plan.text
            assert plan.json()["status"] == "planned"
            assert {i["plan"]["action"] for i in plan.json()["items"]} == {"create"}
            assert _scores(production) is None  # only planned

            done = client.post(f"/v1/runs/{run.id[:8]}/promote", json={})
            assert done.status_code == 200, done.text
            result = done.json()
            assert result["status"] == "succeeded", result
            assert result["actor"].startswith("api-key:") and result["data"] == "released"
            record = client.get(f"/v1/promotions/{result['id']}").json()
            assert record["host"] == B and record["status"] == "succeeded"
            # Production holds the run's data; host-b released what it kept.
            assert _scores(production) == 100
            assert production.redis().get("emb:0") is not None
            assert len(production.points("docs")) == 20
            assert not data_path.exists()
            stack = client.get(f"/v1/runs/{run.id}").json()["stack"]
            assert stack["data"]["state"] == "promoted"

            # The rollback goes where the promotion ran.
            back = client.post(f"/v1/promotions/{result['id']}/rollback", json={})
            assert back.status_code == 200, back.text
            assert back.json()["status"] == "rolled_back"
            assert _scores(production) is None
            assert production.redis().get("emb:0") is None
            after = client.get(f"/v1/promotions/{result['id']}").json()
            assert after["status"] == "rolled_back" and after["rolled_back_by"].startswith("api-")
        lines = worker.output
        assert "(promote): asked by host-a" in lines and "(rollback): asked by host-a" in lines

        # Host-b's worker gone: a one-line error naming it, and nothing done.
        worker.stop()
        other = _kept_on(B, monkeypatch, seed=2)
        with api.client(key=make_key("promote", "read", env=api.env)) as client:
            refused = client.post(f"/v1/runs/{other.id}/promote", json={})
            assert refused.status_code == 503, refused.text
            detail = refused.json()["detail"]
            assert "\n" not in detail
            assert detail.startswith(
                f"run {other.id[:8]}'s kept data is on host {B}, which has no live worker "
                "(last heartbeat "
            )
            assert detail.endswith(
                f"start `omnilab worker` on {B}, or run `omnilab promote {other.id[:8]}` there"
            )
            planned = client.post(f"/v1/runs/{other.id}/promote", json={"dry_run": True})
            assert planned.status_code == 503 and B in planned.json()["detail"]
            discard = client.post(f"/v1/runs/{other.id}/discard")
            assert discard.status_code == 503 and B in discard.json()["detail"]
        assert _scores(production) is None
        assert Path(other.data["path"]).is_dir()  # type: ignore[index]

        # The same from the command line on host-a.
        cli = run_cli("promote", other.id, env={**api.env, "OMNILAB_HOST": A})
        assert cli.returncode == 1, cli.stdout + cli.stderr
        line = cli.stderr.strip()
        assert "\n" not in line and f"is on host {B}, which has no live worker" in line
        assert "Traceback" not in cli.stderr

        # And with no Redis to hand it over with.
        no_redis = {**api.env, "OMNILAB_HOST": A, "REDIS_URL": "redis://127.0.0.1:1/0"}
        restarted = _worker(workdir, production, B)
        try:
            cli = run_cli("promote", other.id, env=no_redis)
            assert cli.returncode == 1, cli.stdout + cli.stderr
            assert "needs the queue's Redis (REDIS_URL): cannot reach Redis" in cli.stderr
            assert f"run {other.id[:8]}'s kept data is on host {B}" in cli.stderr
            # Discarded on host-b, asked from host-a's command line.
            cli = run_cli("discard", other.id[:8], env={**api.env, "OMNILAB_HOST": A})
            assert cli.returncode == 0, cli.stderr
            assert f"run {other.id[:8]} ({other.experiment}): stack data discarded" in cli.stdout
            assert not Path(other.data["path"]).exists()  # type: ignore[index]
            assert "(discard): asked by host-a" in restarted.output
        finally:
            restarted.stop()
        assert api.service.proc.poll() is None and "Traceback" not in api.service.output
    finally:
        api.service.stop()


def test_a_refusal_on_the_other_host_reads_as_a_local_one(
    production: Production, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_production(production)
    run = _kept_on(B, monkeypatch, seed=5)
    env = _env(production)
    worker = _worker(workdir, production, B)
    try:
        here = {**env, "OMNILAB_HOST": A}
        cli = run_cli("promote", run.id, "--json", env=here)
        # A conflict: usage error (2), the plan on stdout, its one line on stderr.
        assert cli.returncode == 2, cli.stdout + cli.stderr
        refused = json.loads(cli.stdout)
        assert refused["status"] == "refused"
        assert {i["plan"]["action"] for i in refused["items"]} == {"conflict"}
        said = cli.stderr.strip().splitlines()
        assert said[0].startswith(f"run {run.id[:8]}'s kept data is on host {B}: promote handed")
        assert [line for line in said if "use --on-conflict" in line] == said[-1:]

        # What host-b itself prints for the same plan: the same JSON, but for who asked,
        # the time it took and what differs from one reopening of the stack to the next.
        local = run_cli("promote", run.id, "--json", "--dry-run", env={**env, "OMNILAB_HOST": B})
        remote = run_cli("promote", run.id, "--json", "--dry-run", env=here)
        assert local.returncode == remote.returncode == 0, local.stderr + remote.stderr
        mine, theirs = json.loads(local.stdout), json.loads(remote.stdout)
        assert mine.pop("actor").endswith(f"@{B}") and theirs.pop("actor").endswith(f"@{A}")
        assert mine.keys() == theirs.keys()
        assert _gist(mine) == _gist(theirs)

        done = run_cli("promote", run.id, "--on-conflict", "replace", "--json", env=here)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == "succeeded" and result["actor"].endswith(f"@{A}")
        assert f"kept data is on host {B}: promote handed to its worker" in done.stderr
        assert _scores(production) == 100
        rolled = run_cli("rollback", result["id"], "--json", env=here)
        assert rolled.returncode == 0, rolled.stderr
        assert json.loads(rolled.stdout)["status"] == "rolled_back"
        assert _scores(production) == 2  # production's own rows are back
    finally:
        worker.stop()


def test_each_host_sweeps_its_own_expired_kept_data(
    production: Production, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.00002 days: under two seconds.
    monkeypatch.setenv("OMNILAB_RETENTION_DAYS", "0.00002")
    mine = _kept_on(B, monkeypatch)
    theirs = _kept_on(C, monkeypatch, seed=3)
    worker = _worker(workdir, production, B, OMNILAB_RETENTION_SWEEP_INTERVAL="0.5")
    try:
        path = Path(mine.data["path"])  # type: ignore[index]
        assert wait_until(lambda: not path.exists(), timeout=30), worker.output
        assert wait_until(lambda: mine.refresh().data["state"] == "expired", timeout=10)  # type: ignore[union-attr, index]
        assert f"run {mine.id[:8]}: stack data removed (expired)" in worker.output
        # Host-c's is host-c's to remove.
        assert Path(theirs.data["path"]).is_dir()  # type: ignore[index]
        assert theirs.refresh().data["state"] == "kept"  # type: ignore[union-attr, index]
    finally:
        worker.stop()
    with monkeypatch.context() as patch:
        patch.setenv("OMNILAB_HOST", C)
        theirs.discard()
    assert not os.path.exists(theirs.data["path"])  # type: ignore[index]


def test_a_task_taken_by_a_dead_hosts_connection_is_sent_again(
    production: Production, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker host killed outright leaves its lane's blocked read open on Redis's side
    (until TCP gives up, minutes later); Redis hands the next task to that read, the
    oldest, and the dead host never runs it. The caller sees the message gone with the
    task not started, and sends it again to the lane that is alive."""
    run = _kept_on(B, monkeypatch)
    lane_key = "rq:queue:omnilab@host-b/tasks"
    # The dead lane: a connection blocked on the lane before the live one, as rq blocks
    # (BLMOVE into its intermediate list), that never reads what it is given.
    ghost = production.redis().connection_pool.make_connection()
    ghost.connect()
    ghost.send_command("BLMOVE", lane_key, f"{lane_key}:intermediate", "LEFT", "RIGHT", 0)
    worker = _worker(workdir, production, B)
    try:
        assert wait_until(lambda: ": ready: " in worker.output, timeout=30), worker.output
        env = {**_env(production), "OMNILAB_HOST": A, "OMNILAB_HOST_TASK_START_TIMEOUT": "20"}
        cli = run_cli("discard", run.id[:8], env=env)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert f"run {run.id[:8]} ({run.experiment}): stack data discarded" in cli.stdout
        assert "(discard): asked by host-a" in worker.output
        # The dead lane did take the first delivery.
        taken = ghost.read_response()
        assert taken is not None and taken.decode().startswith("task-"), taken
        assert not Path(run.data["path"]).exists()  # type: ignore[index]
        assert "Traceback" not in worker.output
    finally:
        ghost.disconnect()
        worker.stop()
