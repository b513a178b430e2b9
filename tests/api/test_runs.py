"""The HTTP API end to end: a real server, real Redis and PostgreSQL, real workers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.support import stack_processes, wait_until
from tests.support.queue_helpers import Api


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str | None, str]]:
    """(event, id, data) of a server-sent event stream, as they arrive."""
    kind, event_id, data = "message", None, []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield kind, event_id, "\n".join(data)
            kind, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)


def test_experiments_are_those_of_the_folder_with_their_params_schema(api: Api) -> None:
    with api.client("read") as client:
        listed = client.get("/v1/experiments").json()
        names = {e["name"] for e in listed["experiments"]}
        assert {"Quick", "Stacked", "Typed", "GpuEcho", "GpuOnly"} == names
        assert any("broken.py" in p for p in listed["problems"])
        typed = client.get("/v1/experiments/Typed").json()
        schema = typed["params_schema"]
        assert schema["properties"]["count"]["maximum"] == 1000
        assert schema["properties"]["mode"]["enum"] == ["fast", "exact"]
        assert client.get("/v1/experiments/Nope").status_code == 404
    # The OpenAPI document carries each experiment's params model.
    doc = httpx.get(f"{api.url}/openapi.json").json()
    body = doc["paths"]["/v1/runs"]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/TypedRunRequest"} in body["schema"]["oneOf"]
    assert doc["components"]["schemas"]["TypedParams"]["properties"]["ratio"]["type"] == "number"


def test_a_queued_run_is_run_by_a_worker_and_recorded(api: Api, start_worker) -> None:
    run_id = api.queue("Quick", {"n": 4, "label": "row"})
    queued = api.run(run_id)
    assert queued["status"] in ("queued", "running", "succeeded")
    assert queued["owner"] == "api-key:test"
    start_worker()
    done = api.wait_status(run_id, "succeeded")
    assert done["summary"]["n"] == 4
    assert done["metrics"]["i"]["last"] == 3
    assert done["queue"]["attempt"] == 1
    assert done["started_at"] >= done["created_at"]
    with api.client("read") as client:
        metrics = client.get(f"/v1/runs/{run_id}/metrics").json()["metrics"]
        assert [p["value"] for p in metrics["i"]["points"]] == [0, 1, 2, 3]
        page = client.get(f"/v1/runs/{run_id}/metrics", params={"limit": 2}).json()["metrics"]
        assert page["i"]["truncated"] and len(page["i"]["points"]) == 2
        rest = client.get(
            f"/v1/runs/{run_id}/metrics", params={"limit": 2, "after_step": 1}
        ).json()["metrics"]["i"]
        assert [p["step"] for p in rest["points"]] == [2, 3] and not rest["truncated"]
        # ...and the run is where `omnilab runs` finds it.
        listed = client.get("/v1/runs", params={"experiment": "Quick"}).json()
        assert run_id in [r["id"] for r in listed["runs"]]


def test_bad_input_is_named_and_nothing_is_queued(api: Api) -> None:
    with api.client("read", "run") as client:
        unknown = client.post("/v1/runs", json={"experiment": "Nope"})
        assert unknown.status_code == 404
        assert "Nope" in unknown.json()["detail"] and "Quick" in unknown.json()["detail"]
        bad = client.post(
            "/v1/runs",
            json={
                "experiment": "Typed",
                "params": {"count": 0, "ratio": "high", "mode": "slow", "colour": "red"},
            },
        )
        assert bad.status_code == 422
        fields = {e["loc"][-1]: e["msg"] for e in bad.json()["detail"]}
        assert set(fields) == {"count", "ratio", "mode", "colour"}
        assert fields["colour"] == "unknown parameter"
        for body in (
            {"experiment": "Typed", "params": {"tags": ["a\u0000b"]}},
            {"params": {}},
            {"experiment": "Typed", "retries": 11},
            {"experiment": "Typed", "surprise": 1},
            [],
        ):
            response = client.post("/v1/runs", json=body)
            assert response.status_code == 422, (body, response.text)
        not_json = client.post(
            "/v1/runs", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422
        deep = client.post(
            "/v1/runs", content=b"[" * 100_000, headers={"content-type": "application/json"}
        )
        assert deep.status_code in (400, 422)
        # The route reads its own request, with FastAPI's rules and error shapes.
        as_json = {"content-type": "application/json"}
        for content, headers, loc, kind in (
            (b'{"experiment": "Typed"}', {"content-type": "text/plain"}, ["body"], None),
            (b"", as_json, ["body"], "missing"),
            (
                b'{"experiment": "Typed"}',
                {**as_json, "Idempotency-Key": "a b"},
                ["header", "idempotency-key"],
                "string_pattern_mismatch",
            ),
        ):
            response = client.post("/v1/runs", content=content, headers=headers)
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            assert [d["loc"] for d in detail] == [loc], detail
            assert kind is None or detail[0]["type"] == kind, detail
        extra = client.post("/v1/runs", json={"experiment": "Typed", "x": 1}).json()
        assert extra["detail"][0]["msg"] == "Extra inputs are not permitted"
        # Oversized bodies are refused, declared or streamed.
        huge = {"experiment": "Typed", "params": {"tags": ["x" * 1000] * 2000}}
        assert client.post("/v1/runs", json=huge).status_code == 413

        def chunks():
            for _ in range(3000):
                yield b"x" * 1000

        assert client.post("/v1/runs", content=chunks()).status_code == 413
        assert client.get("/v1/runs/zz").status_code == 422
        assert client.get("/v1/runs/" + "0" * 32).status_code == 404
        assert client.get("/v1/runs", params={"status": "sleeping"}).status_code == 422
        assert client.get("/v1/runs").json()["runs"] == []


def test_idempotency_key_queues_once(api: Api) -> None:
    with api.client() as client:
        headers = {"Idempotency-Key": "order-42"}
        first = client.post("/v1/runs", json={"experiment": "Quick"}, headers=headers)
        again = client.post("/v1/runs", json={"experiment": "Quick"}, headers=headers)
        assert (first.status_code, again.status_code) == (202, 200)
        assert first.json()["id"] == again.json()["id"]
        # The same request spelt out (a default written in) is the same request...
        spelt = client.post(
            "/v1/runs", json={"experiment": "Quick", "params": {"n": 3}}, headers=headers
        )
        assert (spelt.status_code, spelt.json()["id"]) == (200, first.json()["id"])
        # ...another one under the same key is refused, not answered with the first run.
        for body in (
            {"experiment": "Quick", "params": {"n": 4}},
            {"experiment": "Typed"},
            {"experiment": "Quick", "retries": 2},
        ):
            other = client.post("/v1/runs", json=body, headers=headers)
            assert other.status_code == 422, other.text
            (problem,) = other.json()["detail"]
            assert problem["loc"] == ["header", "idempotency-key"]
            assert first.json()["id"] in problem["msg"]
        assert len(client.get("/v1/runs").json()["runs"]) == 1


def test_listing_filters_and_pages(api: Api) -> None:
    ids = [api.queue("Quick", {"n": i}) for i in range(5)]
    api.queue("Typed")
    with api.client("read") as client:
        page = client.get("/v1/runs", params={"experiment": "Quick", "limit": 2}).json()
        assert [r["id"] for r in page["runs"]] == ids[::-1][:2]
        assert page["next_offset"] == 2
        last = client.get(
            "/v1/runs", params={"experiment": "Quick", "limit": 2, "offset": 4}
        ).json()
        assert [r["id"] for r in last["runs"]] == ids[:1] and last["next_offset"] is None
        queued = client.get("/v1/runs", params={"status": "queued"}).json()["runs"]
        assert len(queued) == 6


def test_cancel_a_queued_run_it_never_starts(api: Api, start_worker) -> None:
    run_id = api.queue("Quick")
    with api.client() as client:
        response = client.post(f"/v1/runs/{run_id}/cancel")
        assert response.status_code == 202 and response.json()["status"] == "cancelled"
        assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 409
    later = api.queue("Quick")
    start_worker()
    api.wait_status(later, "succeeded")
    run = api.run(run_id)
    assert run["status"] == "cancelled" and run["queue"]["attempt"] == 0


def test_cancel_stops_a_running_run_and_tears_its_stack_down(api: Api, start_worker) -> None:
    start_worker()
    run_id = api.queue("Stacked", {"seconds": 120})
    api.wait_status(run_id, "running")
    with api.client("read") as client, client.stream("GET", f"/v1/runs/{run_id}/logs") as stream:
        for line in stream.iter_lines():
            if "sleeping" in line:
                break
    assert stack_processes(), "the run's stack should be up"
    with api.client() as client:
        response = client.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "running"
    run = api.wait_status(run_id, "cancelled", timeout=30)
    assert run["error"].startswith("cancelled on request")
    assert wait_until(lambda: not stack_processes(), timeout=15)
    assert run["timings"]["teardown_s"] < 10


def test_logs_stream_live_then_complete(api: Api, start_worker) -> None:
    start_worker()
    # Long enough that a line shipped live arrives before the end on a loaded machine.
    run_id = api.queue("Quick", {"n": 4, "pause": 1.2, "label": "tick"})
    first_tick_at: datetime | None = None
    with (
        api.client("read") as client,
        client.stream("GET", f"/v1/runs/{run_id}/logs", timeout=60) as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = []
        for event in sse_events(stream):
            events.append(event)
            if event[0] == "log" and event[2].startswith("tick") and first_tick_at is None:
                first_tick_at = datetime.now(UTC)
    kinds = [e[0] for e in events]
    assert kinds[0] == "status" and kinds[-1] == "end"
    ticks = [e[2] for e in events if e[0] == "log" and e[2].startswith("tick")]
    assert ticks == ["tick 0", "tick 1", "tick 2", "tick 3"]
    finished_at = datetime.fromisoformat(api.run(run_id)["finished_at"])
    assert first_tick_at is not None and first_tick_at < finished_at, (
        f"lines must arrive while the run is running: first at {first_tick_at}, "
        f"the run finished at {finished_at}"
    )
    assert json.loads(events[-1][2])["status"] == "succeeded"
    # Afterwards: the complete log, then the end; resuming after a line skips up to it.
    with api.client("read") as client:
        response = client.get(f"/v1/runs/{run_id}/logs")
        again = list(sse_events(response))
        assert [e[2] for e in again if e[0] == "log"] == [e[2] for e in events if e[0] == "log"]
        tick1 = next(e for e in again if e[2] == "tick 1")
        resumed = list(
            sse_events(client.get(f"/v1/runs/{run_id}/logs", headers={"Last-Event-ID": tick1[1]}))
        )
        assert [e[2] for e in resumed if e[2].startswith("tick")] == ["tick 2", "tick 3"]


def test_the_server_refuses_what_it_cannot_do(workdir: Path, tracking_db: str) -> None:
    from tests.support import run_cli

    unreachable = run_cli(
        "serve", "--port", "1", env={"OMNILAB_TRACKING_URL": "postgresql://u:pw@127.0.0.1:1/x"}
    )
    assert unreachable.returncode == 1
    assert "cannot reach the tracking store" in unreachable.stderr
    assert "pw@" not in unreachable.stderr
    # A worker whose Redis is away waits for it (an outage, not a refusal): that and its
    # masked URL are tests/test_redact.py's test_the_worker_never_prints_the_redis_password.
    bad_gpus = run_cli("worker", "--gpus", "zero")
    assert bad_gpus.returncode == 2 and "--gpus" in bad_gpus.stderr
