"""Forking a Qdrant collection as its shards' snapshots, where production's key may
stream them: what moves, that production is untouched, and every case that takes the point
copy instead (a read-only key, a partial seed, production written during the fork)."""

from __future__ import annotations

import io
import os
import signal
import threading
from typing import Any

import httpx
import pytest

from omnilab.progress import Reporter
from omnilab.promote import QdrantCollection
from omnilab.services.qdrant import servers
from tests.fork.conftest import ReadOnly, fill_docs, fork_docs
from tests.support import EXPERIMENTS, paused_at, stack_processes, wait_until


@pytest.fixture(name="manage_key")
def manage_key_fixture(read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch) -> ReadOnly:
    """Production's Qdrant reached with its admin key (the one key many users have), the
    fork cache off: each fork reads production."""
    monkeypatch.setenv("QDRANT_API_KEY", read_only.qdrant.admin_key)
    monkeypatch.setenv("OMNILAB_FORK_CACHE_SIZE", "0")
    return read_only


def _snapshots_on_production(ro: ReadOnly, shards: int) -> list[Any]:
    """Every snapshot production stores, of the collection and of each shard."""
    headers = {"api-key": ro.qdrant.admin_key}
    found = []
    with httpx.Client(base_url=ro.qdrant.url, headers=headers) as http:
        found += http.get("/collections/docs/snapshots").json()["result"]
        for shard in range(shards):
            found += http.get(f"/collections/docs/shards/{shard}/snapshots").json()["result"]
    return found


def _production_points(ro: ReadOnly) -> dict[Any, Any]:
    q = ro.qdrant.admin()
    try:
        points, _ = q.scroll("docs", limit=10_000, with_vectors=True)
    finally:
        q.close()
    return {p.id: (p.payload, p.vector) for p in points}


def test_a_collection_moves_as_its_shards_snapshots_verified_production_untouched(
    manage_key: ReadOnly,
) -> None:
    fill_docs(manage_key, n=2000, shards=3)
    before = manage_key.qdrant_state()
    seed, copied = fork_docs()
    assert seed["method"] == "shard-snapshot", seed
    assert seed["run"]["checksum"] == seed["production"]["checksum"]
    assert seed["production"]["selected"] == 2000
    assert copied["points"] == _production_points(manage_key)
    assert "source" in copied["indexed"]  # made like production's, payload index included
    # A streamed snapshot is built as it is sent: production stores none and changes not.
    assert manage_key.qdrant_state() == before
    assert _snapshots_on_production(manage_key, 3) == []


def test_a_read_only_key_and_a_partial_seed_take_the_point_copy(
    read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Qdrant refuses a read-only key a snapshot stream: the points are copied, with no
    word about it (it is the usual case). A ``limit=`` seed (as a ``sample=`` one) selects
    points, which a snapshot cannot: copied too, whatever the key."""
    fill_docs(read_only, n=500)
    monkeypatch.setenv("OMNILAB_FORK_CACHE_SIZE", "0")
    notes = io.StringIO()
    seed, copied = fork_docs(reporter=Reporter(notes))
    assert seed["method"] == "points", seed
    assert seed["run"]["checksum"] == seed["production"]["checksum"]
    assert len(copied["points"]) == 500
    assert "snapshot" not in notes.getvalue(), notes.getvalue()
    monkeypatch.setenv("QDRANT_API_KEY", read_only.qdrant.admin_key)
    seed, copied = fork_docs(QdrantCollection("docs", limit=100))
    assert seed["method"] == "points", seed
    assert sorted(copied["points"]) == list(range(100))


def test_production_written_between_the_snapshot_and_its_read_is_copied_as_read(
    manage_key: ReadOnly, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A point changed in production after its shard's snapshot was taken and before
    production's points were read for the checksum: the checksums differ, so the points
    are copied after all, and the run holds what production holds now."""
    fill_docs(manage_key, n=1000)
    notes = io.StringIO()
    pull = servers.QdrantServer.pull_shard
    scan = servers.QdrantServer.scan
    pulled = threading.Event()

    def pull_then_write(self: servers.QdrantServer, *args: Any) -> None:
        pull(self, *args)
        q = manage_key.qdrant.admin()
        try:
            q.set_payload("docs", {"source": "written during the fork"}, points=[7], wait=True)
        finally:
            q.close()
        pulled.set()

    def scan_after_the_pull(self: servers.QdrantServer, *args: Any, **kwargs: Any) -> Any:
        assert pulled.wait(30)
        return scan(self, *args, **kwargs)

    monkeypatch.setattr(servers.QdrantServer, "pull_shard", pull_then_write)
    monkeypatch.setattr(servers.QdrantServer, "scan", scan_after_the_pull)
    seed, copied = fork_docs(reporter=Reporter(notes))
    assert "production changed while its shards were copied" in notes.getvalue()
    assert seed["method"] == "points", seed
    assert seed["cache"].get("recopied") is True, seed
    assert seed["run"]["checksum"] == seed["production"]["checksum"]
    assert copied["points"][7][0] == {"source": "written during the fork"}
    assert copied["points"] == _production_points(manage_key)


def test_a_server_that_cannot_fetch_the_shard_gets_it_streamed_through_omnilab(
    manage_key: ReadOnly, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's server cannot reach production (as from a container, where 127.0.0.1 is
    its own): the snapshots are streamed through this process instead, and said once."""
    asked = []

    def unreachable(self: servers.QdrantServer, name: str, shard: int, *_: Any) -> None:
        asked.append(shard)
        raise RuntimeError("qdrant PUT recover: Failed to download tar: connection refused")

    monkeypatch.setattr(servers.QdrantServer, "pull_shard", unreachable)
    fill_docs(manage_key, n=700, shards=2)
    notes = io.StringIO()
    seed, copied = fork_docs(reporter=Reporter(notes))
    # Said once: the second shard is streamed without asking the server again.
    assert notes.getvalue().count("streaming it through omnilab") == 1, notes.getvalue()
    assert asked == [0]
    assert seed["method"] == "shard-snapshot via omnilab", seed
    assert seed["run"]["checksum"] == seed["production"]["checksum"]
    assert copied["points"] == _production_points(manage_key)


@pytest.mark.parametrize("experiment", ["ForkedDocs", "ForkedDocsAndKeys"])
def test_ctrl_c_while_the_run_downloads_a_shard_stops_without_waiting_for_it(
    manage_key: ReadOnly, workdir: Any, experiment: str
) -> None:
    """The run's Qdrant downloading a shard is one request that omnilab cannot call back
    (a large collection's takes minutes): at Ctrl-C the fork stops waiting for it, with
    the collection copied alone (on the main thread) and beside another service's copy
    (in threads), and the download goes with the stack. The download is held at the
    pause point: waited for, the command would never end."""
    fill_docs(manage_key, n=2000)
    r = manage_key.admin.redis()
    r.mset({f"big:{i}": "x" * 100 for i in range(2000)})
    r.close()
    before = manage_key.qdrant_state()
    target = f"{EXPERIMENTS / 'forked.py'}:{experiment}"
    with paused_at("moving:qdrant", "run", target, "--runtime", "local", cwd=workdir) as (
        proc,
        seen,
    ):
        assert stack_processes(), seen
        os.kill(proc.pid, signal.SIGINT)
        rest = proc.stderr.read()
        proc.wait(timeout=30)
    text = "".join(seen) + rest
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert wait_until(lambda: not stack_processes(), timeout=20)
    assert manage_key.qdrant_state() == before
    assert _snapshots_on_production(manage_key, 1) == []
