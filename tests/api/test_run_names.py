"""Runs' names and tags through the HTTP API: given when queued, kept when a worker runs
the run, shown in every run view, filtered on."""

from __future__ import annotations

from tests.support.queue_helpers import Api


def test_name_and_tags_are_queued_kept_and_filtered_on(api: Api, start_worker) -> None:
    with api.client() as client:
        queued = client.post(
            "/v1/runs",
            json={"experiment": "Quick", "name": "first try", "tags": ["a", "b", "a"]},
        )
        assert queued.status_code == 202, queued.text
        assert (queued.json()["name"], queued.json()["tags"]) == ("first try", ["a", "b"])
        run_id = queued.json()["id"]
        # The other way in (an Idempotency-Key: recorded by its own statement).
        headers = {"Idempotency-Key": "tagged-1"}
        keyed = client.post(
            "/v1/runs", json={"experiment": "Quick", "tags": ["b"]}, headers=headers
        )
        assert keyed.status_code == 202, keyed.text
        assert keyed.json()["tags"] == ["b"] and keyed.json()["name"] is None
        other = client.post(
            "/v1/runs", json={"experiment": "Quick", "tags": ["c"]}, headers=headers
        )
        assert other.status_code == 422 and "another tags" in other.text

        tagged_a = client.get("/v1/runs", params={"tag": "a"}).json()["runs"]
        assert [r["id"] for r in tagged_a] == [run_id]
        tagged_b = client.get("/v1/runs", params={"tag": "b"}).json()["runs"]
        assert {r["id"] for r in tagged_b} == {run_id, keyed.json()["id"]}

        for body, where in (
            ({"experiment": "Quick", "tags": ["two words"]}, ["body", "tags", 0]),
            ({"experiment": "Quick", "name": "a\nb"}, ["body", "name"]),
            ({"experiment": "Quick", "tags": [str(i) for i in range(21)]}, ["body", "tags"]),
        ):
            refused = client.post("/v1/runs", json=body)
            assert refused.status_code == 422, refused.text
            assert [p["loc"] for p in refused.json()["detail"]] == [where]
        assert client.get("/v1/runs", params={"tag": "two words"}).status_code == 422

    start_worker()
    done = api.wait_status(run_id, "succeeded")
    assert (done["name"], done["tags"]) == ("first try", ["a", "b"])  # the worker kept them
