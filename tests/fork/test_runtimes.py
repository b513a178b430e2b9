"""Forking on the docker runtime and in runs queued through the HTTP API.

The fork happens in the runner, between the stack's start and ``run()``: the same code
whatever runs the stack (containers whose ports are published on the host) and whoever
runs the runner (``omnilab run``, or a worker's run for the API). Production is the
fork tests' own, local servers on 127.0.0.1 reached with read-only credentials.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest

import omnilab
from omnilab.progress import QuietReporter, Reporter
from tests.fork.conftest import ReadOnly, fill
from tests.support import EXPERIMENTS
from tests.support.queue_helpers import FAST, spawn_worker, start_api

FORKED = f"{EXPERIMENTS / 'forked.py'}:Forked"
SEEDS = {
    "postgres table users",
    "postgres table orders",
    "redis keys emb:*",
    "qdrant collection docs",
}
#: What the run queue keeps in the Redis it shares with production (``REDIS_URL``).
QUEUE_KEYS = (b"rq:", b"omnilab:log:", b"omnilab:task:")


def _check_found(found: dict[str, Any]) -> None:
    """What a run of Forked found in its stack: the seeds of tests/fork/conftest.py's fill."""
    assert [u[0] for u in found["tables"]["users"]] == [2, 4, 6, 8, 10]  # where="active"
    assert len(found["tables"]["orders"]) == 7
    assert found["keys"] == sorted([f"emb:{i}" for i in range(12)] + ["emb:set", "emb:stream"])
    assert found["ttls"] == 2
    assert len(found["collections"]["docs"]) == 30


def _check_seeds(recorded: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every seed recorded with production's counts and a copy that matched them."""
    seeds = {s["label"]: s for s in recorded}
    assert set(seeds) == SEEDS
    for seed in seeds.values():
        assert seed["production"]["checksum"] == seed["run"]["checksum"], seed
        assert "***" in seed["url"] or "@" not in seed["url"], seed["url"]
    assert seeds["postgres table users"]["production"]["rows"] == 10
    assert seeds["postgres table users"]["production"]["selected"] == 5
    assert seeds["redis keys emb:*"]["production"]["keys"] == 14
    assert seeds["qdrant collection docs"]["production"]["points"] == 30
    return seeds


@pytest.mark.usefixtures("docker_scope")
def test_a_fork_into_a_docker_stack_copies_verifies_and_records(
    read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production's servers are processes of this host; the run's are containers: every
    copy goes through their published ports, Qdrant's over gRPC on both sides, and the
    second run's tables come from the fork cache. With a Qdrant key that may stream
    snapshots, the run's Qdrant, in its container, cannot reach production on the host's
    127.0.0.1: the shards are streamed through omnilab."""
    fill(read_only)
    before = read_only.snapshot()
    first = omnilab.run(FORKED, runtime="docker", reporter=QuietReporter())
    assert first.ok, first.error
    assert first.record.runtime == "docker"
    assert {s["kind"] for s in first.record.stack["services"].values()} == {"container"}
    _check_found(first.summary)
    seeds = _check_seeds(first.record.seeds)
    # Between servers, not through qdrant-client: the run's gRPC port answered from here.
    assert seeds["qdrant collection docs"]["production"]["checksum"]["method"] == "grpc-xxh3"
    assert seeds["postgres table users"]["cache"]["stored"] is True
    assert seeds["qdrant collection docs"]["method"] == "points"  # the read-only key
    again = omnilab.run(FORKED, runtime="docker", reporter=QuietReporter())
    assert again.ok, again.error
    _check_found(again.summary)
    seeds = _check_seeds(again.record.seeds)
    assert seeds["postgres table users"]["cache"]["served"] is True
    assert seeds["postgres table orders"]["cache"]["served"] is True
    assert seeds["qdrant collection docs"]["method"] == "fork-cache"
    monkeypatch.setenv("QDRANT_API_KEY", read_only.qdrant.admin_key)
    monkeypatch.setenv("OMNILAB_FORK_CACHE_SIZE", "0")
    notes = io.StringIO()
    third = omnilab.run(FORKED, runtime="docker", reporter=Reporter(notes))
    assert third.ok, third.error
    _check_found(third.summary)
    seeds = _check_seeds(third.record.seeds)
    # The run's server, in a container, cannot reach production on this host's loopback:
    # the shards are streamed through omnilab, without first asking it to fetch them.
    assert seeds["qdrant collection docs"]["method"] == "shard-snapshot via omnilab"
    assert "could not fetch" not in notes.getvalue(), notes.getvalue()
    assert read_only.snapshot() == before


def _without_queue(state: dict[str, Any]) -> dict[str, Any]:
    return {
        **state,
        "redis": {k: v for k, v in state["redis"].items() if not k.startswith(QUEUE_KEYS)},
    }


def test_a_queued_run_is_forked_by_its_worker(read_only: ReadOnly, workdir: Path) -> None:
    """The API and a worker with production's settings, as on the production host: the
    queue is production's Redis (``REDIS_URL``, which a queue must be able to write, so
    the Redis seeds are read through it), PostgreSQL and Qdrant are read-only."""
    fill(read_only)
    before = read_only.snapshot()
    folder = workdir / "experiments"
    folder.mkdir()
    shutil.copy(EXPERIMENTS / "forked.py", folder)
    env = {
        **FAST,
        **read_only.env,
        "REDIS_URL": read_only.admin.redis_url,
        "OMNILAB_EXPERIMENTS_DIR": str(folder),
    }
    api = start_api(workdir, env)
    worker = None
    try:
        worker = spawn_worker(workdir, env)
        run = api.wait_status(api.queue("Forked"), ("succeeded", "failed"), timeout=120)
        assert run["status"] == "succeeded", (run["error"], worker.output)
        _check_found(run["summary"])
        _check_seeds(run["seeds"])
        assert run["timings"]["fork_s"] > 0
        # Every key: production's, not the queue's, though the queue holds some meanwhile.
        every = api.wait_status(api.queue("ForkedKeys"), ("succeeded", "failed"), timeout=120)
        assert every["status"] == "succeeded", (every["error"], worker.output)
        queue_keys = [k for k in read_only.admin.redis_state() if k.startswith(QUEUE_KEYS)]
        assert any(k.startswith(b"omnilab:log:") for k in queue_keys), queue_keys
        assert any(k.startswith(b"rq:") for k in queue_keys), queue_keys
        expected = sorted(k.decode() for k in before["redis"])
        assert every["summary"]["keys"] == expected
    finally:
        if worker is not None:
            worker.stop()
        api.service.stop()
    assert _without_queue(read_only.snapshot()) == _without_queue(before)
