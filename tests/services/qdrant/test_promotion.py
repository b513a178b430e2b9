"""Qdrant promotion between real servers: the run's Qdrant (a local process, or a
container) and production's (a server of its own, tests/support/promotion_support.py).

The copy is verified by checksums that each server's own points produce; a point changed
in the staged copy fails the promotion; the alias switch is atomic for a reader polling
all along; rollback gives back exactly what was there; a promotion killed in the middle of
its copy leaves what readers see untouched.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

import omnilab
from omnilab.progress import QuietReporter
from omnilab.promote import PromotionRefused, promote, rollback
from omnilab.services.qdrant import servers
from omnilab.services.qdrant.promotion import MARK
from omnilab.services.qdrant.transfer import CLIENT_METHOD
from tests.support import EXPERIMENTS, OMNILAB, free_port, stack_processes, wait_until
from tests.support.promotion_support import Production

Q = QuietReporter()
EXPERIMENT = str(EXPERIMENTS / "promotable_qdrant.py")


def run_qdrant(runtime: str = "local", **params: Any) -> omnilab.Run:
    run = omnilab.run(f"{EXPERIMENT}:QdrantOnly", params=params, runtime=runtime, reporter=Q)
    assert run.ok, run.error
    source = run.record.stack["services"]["qdrant"]["source"]
    assert "local mode" not in source, source  # a server, not qdrant-client's local mode
    return run


def server(production: Production) -> servers.QdrantServer:
    """Production as omnilab's promotion reaches it (HTTP, gRPC, API key)."""
    import os

    grpc_port = int(os.environ["QDRANT_GRPC_PORT"])
    return servers.QdrantServer(
        servers.Address(production.qdrant_url, grpc_port, production.qdrant_api_key)
    )


def readers_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What production readers use: aliases and collections not named by omnilab."""
    qdrant = snapshot["qdrant"]
    return {
        "aliases": qdrant["aliases"],
        "collections": {k: v for k, v in qdrant["collections"].items() if MARK not in k},
        "aliased": {a: qdrant["collections"][c] for a, c in qdrant["aliases"]},
    }


def readable(production: Production) -> bool:
    try:
        production.qdrant_state()
    except Exception:
        return False
    return True


def test_promotion_between_servers_switches_atomically_verified_and_rolls_back(
    production: Production,
) -> None:
    first = run_qdrant(seed=1, n_points=300)
    assert promote(first.id, reporter=Q).status == "succeeded"
    before = production.snapshot()
    second = run_qdrant(seed=2, n_points=200)

    # A reader polls production's docs all along: one request, one collection's points.
    seen: list[Any] = []
    stop = threading.Event()

    def read() -> None:
        client = production.qdrant()
        try:
            while not stop.is_set():
                try:
                    found, _ = client.scroll("docs", limit=1000, with_payload=True)
                    seen.append((len(found), frozenset(p.payload["seed"] for p in found)))
                except Exception as exc:
                    seen.append(repr(exc))
        finally:
            client.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = promote(second.id, on_conflict="replace", reporter=Q)
    finally:
        stop.set()
        reader.join()
    assert result.status == "succeeded"
    assert set(seen) == {(300, frozenset({1})), (200, frozenset({2}))}, set(seen)
    assert seen[-1] == (200, frozenset({2}))

    [item] = result.items
    # Shards streamed as snapshots; each checksum read back from its own server.
    assert item.staging["copy_method"] == "shard-snapshot"
    source, target = item.checksums["source"], item.checksums["target"]
    assert source == target and target["points"] == 200
    assert target["method"] == servers.METHOD
    assert item.counts == {"source": 200, "target": 200}
    collection = item.switch["collection"]
    with server(production) as prod:
        assert prod.digest(collection) == target
    client = production.qdrant()
    try:
        info = client.get_collection("docs")
        assert info.config.params.vectors.distance == models.Distance.COSINE
        assert info.config.params.vectors.size == 16
        assert set(info.payload_schema) == {"group"}
        # The payload index is the run's: a filtered count uses it.
        hits = client.count(
            "docs",
            count_filter=models.Filter(
                must=[models.FieldCondition(key="group", match=models.MatchValue(value="g3"))]
            ),
        )
        assert hits.count == 40
    finally:
        client.close()
    # The collection the alias left is kept until the rollback, which brings it back.
    assert item.switch["replaced"] in production.snapshot()["qdrant"]["collections"]
    assert rollback(result.id, reporter=Q).status == "rolled_back"
    assert production.snapshot() == before


@pytest.mark.parametrize("copy", ["shard-snapshot via omnilab", "points"])
def test_a_point_changed_in_the_staged_copy_fails_the_promotion(
    production: Production, monkeypatch: pytest.MonkeyPatch, copy: str
) -> None:
    first = run_qdrant(seed=1, n_points=300)
    promote(first.id, reporter=Q)
    before = production.snapshot()
    run = run_qdrant(seed=2, n_points=300)

    def unreachable(*args: Any) -> None:
        raise RuntimeError("qdrant PUT .../snapshots/recover: connection refused")

    if copy == "points":
        # As when a shard is not on the server's own node: points are copied instead.
        monkeypatch.setattr(servers.QdrantServer, "shards", lambda self, name: None)
    else:
        # As when production cannot reach the run's Qdrant: omnilab streams the snapshot.
        monkeypatch.setattr(servers.QdrantServer, "pull_shard", unreachable)
    # Once the copy is complete, and before it is read back, another client changes one
    # point of it in production: a vector after a snapshot, a payload after a copy.
    digest = servers.QdrantServer.digest
    changed: list[str] = []

    def change_then_digest(
        self: servers.QdrantServer, name: str, progress: Any = None, **kw: Any
    ) -> Any:
        if MARK in name and name not in before["qdrant"]["collections"] and not changed:
            client = production.qdrant()
            try:
                if copy != "points":
                    vector = models.PointVectors(id=7, vector=[0.25] * 16)
                    client.update_vectors(name, [vector], wait=True)
                else:
                    client.set_payload(name, {"seed": 99}, points=[7], wait=True)
            finally:
                client.close()
            changed.append(name)
        return digest(self, name, progress, **kw)

    monkeypatch.setattr(servers.QdrantServer, "digest", change_then_digest)
    what = "vectors" if copy != "points" else "payloads"
    with pytest.raises(PromotionRefused, match=rf"point 7: {what} differ; sum differ") as info:
        promote(run.id, on_conflict="replace", reporter=Q)
    assert info.value.result.status == "refused"  # a verification that said no: not broken
    assert changed
    assert production.snapshot() == before
    [record] = omnilab.Run.load(run.id).promotions
    [item] = record.items
    assert record.status == "refused" and item.staging["collection"] == changed[0]
    assert item.staging["copy_method"] == copy


def test_without_production_grpc_points_go_through_the_http_api_verified(
    production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QDRANT_GRPC_PORT", str(free_port()))  # nothing answers there
    run = run_qdrant(seed=4, n_points=300)
    result = promote(run.id, reporter=Q)
    [item] = result.items
    assert item.staging["copy_method"] == "points"
    assert item.checksums["source"] == item.checksums["target"]
    assert item.checksums["target"]["method"] == CLIENT_METHOD
    assert len(production.points("docs")) == 300


def test_a_promotion_killed_during_its_copy_leaves_readers_unaffected(
    production: Production, workdir: Path
) -> None:
    first = run_qdrant(seed=1, n_points=300)
    promote(first.id, reporter=Q)
    run = run_qdrant(seed=2, n_points=40_000, dim=64)
    before = production.snapshot()
    proc = subprocess.Popen(
        [str(OMNILAB), "promote", run.id, "--on-conflict", "replace"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = production.qdrant()

    def staged() -> list[str]:
        names = [c.name for c in client.get_collections().collections]
        return [n for n in names if MARK in n and n not in before["qdrant"]["collections"]]

    try:
        assert wait_until(staged, timeout=120, interval=0.01), "the copy never started"
        proc.send_signal(signal.SIGKILL)  # no cleanup of its own is possible
        proc.wait(timeout=10)
    finally:
        proc.kill()
        client.close()
    # Production may still be loading the shard it was fetching (a collection it cannot
    # read meanwhile): what it holds is looked at once it is done.
    assert wait_until(lambda: readable(production), timeout=60)
    after = production.snapshot()
    # Killed during its copy: the staged collection is there, no alias points at it...
    [name] = [c for c in after["qdrant"]["collections"] if c not in before["qdrant"]["collections"]]
    assert name not in {c for _, c in after["qdrant"]["aliases"]}
    # ...and readers see production as it was: the same aliases onto the same points.
    assert readers_view(after) == readers_view(before)
    assert wait_until(lambda: not stack_processes(workdir / "data"), timeout=15)


@pytest.mark.usefixtures("docker_scope")
def test_a_docker_run_is_promoted_between_servers(production: Production) -> None:
    # The Qdrant image is among those docker_scope builds (omnilab/qdrant, from the tests'
    # server binary, standing in for the pinned official one).
    run = run_qdrant(runtime="docker", seed=3, n_points=500)
    assert run.record.stack["runtime"] == "docker"
    path = Path(run.data["path"])
    result = promote(run.id, reporter=Q)
    assert result.status == "succeeded"
    [item] = result.items
    assert item.staging["copy_method"] == "shard-snapshot"
    assert item.checksums["source"] == item.checksums["target"]
    assert item.checksums["target"]["points"] == 500
    points = production.points("docs")
    assert len(points) == 500 and {p.payload["seed"] for p in points.values()} == {3}
    assert not path.exists()  # released with the promotion
