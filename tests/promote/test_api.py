"""``POST /v1/runs/{id}/promote`` and ``/v1/promotions``, through the real server."""

from __future__ import annotations

from pathlib import Path

from tests.support import API_EXPERIMENTS
from tests.support.promotion_support import Production, run_promotable, seed_production
from tests.support.queue_helpers import FAST, make_key, start_api


def test_promote_plan_conflict_rollback_over_http(production: Production, workdir: Path) -> None:
    run = run_promotable()
    # The queue shares production's Redis, as in OmniMind's setup (REDIS_URL).
    env = {**FAST, "REDIS_URL": production.redis_url}
    api = start_api(workdir, {**env, "OMNILAB_EXPERIMENTS_DIR": str(API_EXPERIMENTS)})
    try:
        with api.client("read", "run") as reader:
            refused = reader.post(f"/v1/runs/{run.id}/promote", json={"dry_run": True})
            assert refused.status_code == 403 and "promote" in refused.json()["detail"]
        with api.client(key=make_key("promote", "read")) as client:
            plan = client.post(f"/v1/runs/{run.id[:8]}/promote", json={"dry_run": True})
            assert plan.status_code == 200, plan.text
            assert plan.json()["status"] == "planned"
            assert {i["plan"]["action"] for i in plan.json()["items"]} == {"create"}
            bad = client.post(f"/v1/runs/{run.id}/promote", json={"on_conflict": "merge"})
            assert bad.status_code == 422
            done = client.post(f"/v1/runs/{run.id}/promote", json={})
            assert done.status_code == 200, done.text
            result = done.json()
            assert result["status"] == "succeeded" and result["actor"].startswith("api-key:")
            again = client.post(f"/v1/runs/{run.id}/promote").json()
            assert again["status"] == "nothing_to_do"
            listed = client.get("/v1/promotions", params={"run": run.id}).json()
            assert [p["id"] for p in listed] == [result["id"]]
            one = client.get(f"/v1/promotions/{result['id'][:8]}").json()
            assert one["items"][0]["checksums"]["target"]
            back = client.post(f"/v1/promotions/{result['id']}/rollback", json={})
            assert back.status_code == 200 and back.json()["status"] == "rolled_back"
            twice = client.post(f"/v1/promotions/{result['id']}/rollback", json={})
            assert twice.status_code == 409 and "already rolled back" in twice.json()["detail"]
            assert client.get("/v1/promotions/ffff0000").status_code == 404
            assert client.post("/v1/runs/ffff0000/promote").status_code == 404

        seed_production(production)
        other = run_promotable(seed=9)
        with api.client(key=make_key("promote")) as client:
            conflict = client.post(f"/v1/runs/{other.id}/promote", json={})
            assert conflict.status_code == 409
            body = conflict.json()
            assert "use --on-conflict replace or version" in body["detail"]
            assert {i["plan"]["action"] for i in body["result"]["items"]} == {"conflict"}
    finally:
        api.service.stop()
