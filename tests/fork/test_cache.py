"""The fork cache: a second fork of unchanged production data is restored locally and
verified; changed data never is; the bound, the listing, pruning, a fork killed while it
fills an entry, and two forks filling the same entry at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import omnilab
from omnilab.config import get_settings
from omnilab.progress import QuietReporter
from omnilab.services.fork_cache import ForkCache
from tests.fork.conftest import ReadOnly, fill_docs, fork_docs
from tests.support import EXPERIMENTS, OMNILAB, paused_at, run_cli, stack_processes, wait_until

USERS = f"{EXPERIMENTS / 'forked.py'}:ForkedUsers"


def _fill_users(ro: ReadOnly, rows: int = 300) -> None:
    with ro.admin.pg() as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute(f"INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, {rows}) i")


def _seed(run: omnilab.Run) -> dict:
    (seed,) = run.record.seeds
    return seed


def _fork() -> omnilab.Run:
    run = omnilab.run(USERS, reporter=QuietReporter())
    assert run.ok, run.error
    return run


def _cache() -> ForkCache:
    settings = get_settings()
    return ForkCache(settings.fork_cache_folder, settings.fork_cache_bytes)


def test_a_second_fork_of_unchanged_data_is_restored_from_the_cache_and_verified(
    read_only: ReadOnly,
) -> None:
    _fill_users(read_only)
    first = _fork()
    seed = _seed(first)
    assert seed["cache"]["served"] is False and seed["cache"]["stored"] is True
    (entry,) = _cache().entries()
    assert (entry.path / "rows.bin").stat().st_size > 300 * 10
    second = _fork()
    again = _seed(second)
    assert again["cache"]["served"] is True, again
    assert again["cache"]["key"] == seed["cache"]["key"]
    # Verified: the run's server computed the checksum of what the restore put there.
    assert again["run"]["checksum"] == again["production"]["checksum"]
    assert again["production"]["checksum"] == seed["production"]["checksum"]
    assert second.summary == first.summary
    assert len(second.summary["users"]) == 300
    shown = run_cli("runs", "show", second.id[:8])
    assert "300 rows (from the fork cache)" in shown.stdout, shown.stdout
    listed = run_cli("cache", "ls")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if "table users" in x)
    assert line.split()[:3] == ["postgres", "table", "users"]
    assert seed["production"]["checksum"]["sum"][:16] in line
    assert "reader_fork" in line and "***" in line  # production's URL, its password masked
    assert "1 entries" in listed.stderr


@pytest.mark.parametrize("route", ["no tee", "no psql"])
def test_an_entry_written_otherwise_than_by_tee_serves_the_same(
    read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """An entry's rows are written by ``tee`` as they are copied; without ``tee`` they
    are dumped from the run's verified table, and without ``psql`` psycopg does both:
    the entry serves the second fork the same, and no empty entry is left beside it."""
    from omnilab.services.postgres import rows as postgres_copy

    if route == "no tee":
        monkeypatch.setattr(postgres_copy, "tee_program", lambda: None)
    else:
        monkeypatch.setattr(postgres_copy, "psql_binary", lambda: None)
    _fill_users(read_only)
    first = _seed(_fork())
    assert first["cache"]["stored"] is True, first
    (entry,) = _cache().entries()
    assert (entry.path / "rows.bin").stat().st_size > 300 * 10
    again = _seed(_fork())
    assert again["cache"]["served"] is True, again
    assert again["run"]["checksum"] == again["production"]["checksum"]


def test_changed_production_data_is_never_served_from_the_cache(read_only: ReadOnly) -> None:
    _fill_users(read_only)
    first = _fork()
    with read_only.admin.pg() as conn:
        conn.execute("UPDATE users SET name = 'changed' WHERE id = 7")
    second = _fork()
    assert _seed(second)["cache"]["served"] is False
    assert second.summary["users"][6] == [7, "changed"]
    assert _seed(second)["production"]["checksum"] != _seed(first)["production"]["checksum"]
    assert len(_cache().entries()) == 2  # one per state of production's table
    with read_only.admin.pg() as conn:  # back as it was: the first entry serves it again
        conn.execute("UPDATE users SET name = 'user 7' WHERE id = 7")
    third = _fork()
    assert _seed(third)["cache"]["served"] is True
    assert third.summary == first.summary


def _entry(cache: ForkCache, name: str, size: int, used: float) -> None:
    with cache.writing(name * 4, {"service": "postgres", "label": f"table {name}"}) as folder:
        (folder / "rows.bin").write_bytes(b"x" * size)
    made = cache.folder / (name * 4) / "entry.json"
    if made.exists():
        os.utime(made, (used, used))


def test_the_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    cache = ForkCache(tmp_path / "cache", limit=2500)
    now = time.time()
    _entry(cache, "a", 1000, now - 300)
    _entry(cache, "b", 1000, now - 200)
    with cache.reading("aaaa") as entry:  # a is used: b is now the least recently used
        assert entry is not None
    _entry(cache, "c", 1000, now)
    assert sorted(e.key for e in cache.entries()) == ["aaaa", "cccc"]
    _entry(cache, "d", 3000, now)  # larger than the whole bound: not kept, nothing evicted
    assert sorted(e.key for e in cache.entries()) == ["aaaa", "cccc"]
    assert not [p for p in cache.folder.iterdir() if p.name.startswith(".tmp-")]


def test_ls_and_prune(workdir: Path) -> None:
    cache = _cache()
    now = time.time()
    _entry(cache, "a", 1000, now - 3 * 86400)
    _entry(cache, "b", 2000, now - 3600)
    _entry(cache, "c", 3000, now)
    listed = run_cli("cache", "ls")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[:3] for line in listed.stdout.splitlines()[1:]]
    assert rows == [
        ["postgres", "table", "c"],
        ["postgres", "table", "b"],
        ["postgres", "table", "a"],
    ]
    assert "3 entries" in listed.stderr
    data = json.loads(run_cli("cache", "ls", "--json").stdout)
    assert [e["size"] for e in data["entries"]] == [3000, 2000, 1000]
    dry = run_cli("cache", "prune", "--older-than", "2d", "--dry-run")
    assert dry.returncode == 0 and "would remove postgres table a" in dry.stdout
    assert len(cache.entries()) == 3
    gone = run_cli("cache", "prune", "--older-than", "2d")
    assert "removed postgres table a" in gone.stdout and "table b" not in gone.stdout
    assert "removed 1 entries" in gone.stderr
    to = run_cli("cache", "prune", "--to", "3k")
    assert "removed postgres table b" in to.stdout and "table c" not in to.stdout
    assert [e.key for e in cache.entries()] == ["cccc"]
    for bad, said in (
        ((), "say what to remove"),
        (("--older-than", "soon"), "is not an age"),
        (("--to", "lots"), "is not a size"),
    ):
        refused = run_cli("cache", "prune", *bad)
        assert refused.returncode == 2, refused.stderr
        assert said in refused.stderr.strip().splitlines()[-1]
    everything = run_cli("cache", "prune", "--all")
    assert everything.returncode == 0 and not cache.entries()
    helped = run_cli("cache", "prune", "--help")
    assert "--older-than" in helped.stdout and "least recently used" in helped.stdout


def test_a_fork_killed_while_filling_the_cache_leaves_no_entry(
    read_only: ReadOnly, workdir: Path
) -> None:
    _fill_users(read_only)
    cache = _cache()
    with paused_at("caching:postgres", "run", USERS, cwd=workdir) as (proc, seen):
        # Killed with the entry's rows written and the entry not yet complete.
        (temp,) = cache.folder.glob(".tmp-*")
        assert (temp / "rows.bin").stat().st_size > 0, seen
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert wait_until(lambda: not stack_processes(), timeout=20)
    listed = json.loads(run_cli("cache", "ls", "--json").stdout)
    assert listed["entries"] == []
    assert not list(cache.folder.glob(".tmp-*"))  # the next user of the cache swept it
    run = _fork()
    assert _seed(run)["cache"] == {**_seed(run)["cache"], "served": False, "stored": True}


def test_two_forks_filling_the_same_entry_at_once(read_only: ReadOnly, workdir: Path) -> None:
    _fill_users(read_only, rows=20_000)
    procs = [
        subprocess.Popen(
            [str(OMNILAB), "run", USERS, "--json"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    served = []
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        served.append(json.loads(out)["seeds"][0]["cache"]["served"])
    # Usually both copy from production and both fill the entry; on a loaded machine the
    # second may start after the first stored it, and is served from it: either way, one
    # complete entry and nothing half-written.
    assert False in served, served
    cache = _cache()
    assert len(cache.entries()) == 1
    assert not list(cache.folder.glob(".tmp-*"))
    third = _fork()
    assert _seed(third)["cache"]["served"] is True
    assert len(third.summary["users"]) == 20_000


@pytest.mark.parametrize("download", ["curl", "httpx"])
def test_a_qdrant_collection_is_restored_from_shard_snapshots_and_verified(
    read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch, download: str
) -> None:
    """The first fork copies the points and keeps each shard's snapshot of the run's
    verified collection (downloaded by ``curl``, or streamed through httpx where there
    is none); the second, production unchanged, recovers them (no point re-ingested) and
    verifies the run's checksum against production's; a changed point in production is
    never served; an entry that does not restore to its checksum is removed and the
    points copied."""
    from omnilab.services.qdrant import fork as qdrant_fork

    if download == "httpx":
        monkeypatch.setattr(qdrant_fork, "curl_program", lambda: None)
    else:
        assert qdrant_fork.curl_program() is not None
    fill_docs(read_only)
    first, copied = fork_docs()
    assert first["cache"]["served"] is False and first["cache"]["stored"] is True, first
    (entry,) = [e for e in _cache().entries() if e.service == "qdrant"]
    assert list(entry.path.glob("shard-*.snapshot"))
    second, restored = fork_docs()
    assert second["cache"] == {**second["cache"], "served": True, "key": first["cache"]["key"]}
    assert second["run"]["checksum"] == second["production"]["checksum"]
    assert second["production"]["checksum"] == first["production"]["checksum"]
    assert restored == copied and len(restored["points"]) == 3000
    assert "source" in restored["indexed"]
    listed = run_cli("cache", "ls")
    assert any(line.startswith("qdrant") for line in listed.stdout.splitlines()), listed.stdout

    q = read_only.qdrant.admin()
    try:
        q.set_payload("docs", {"source": "changed"}, points=[11], wait=True)
        third, changed = fork_docs()
        assert third["cache"]["served"] is False
        assert changed["points"][11][0] == {"source": "changed"}
        q.set_payload("docs", {"source": "s2"}, points=[11], wait=True)
    finally:
        q.close()
    # Back as it was: the first entry serves again, unless damaged: then it goes.
    (snapshot,) = entry.path.glob("shard-*.snapshot")
    snapshot.write_bytes(b"not a snapshot")
    fourth, again = fork_docs()
    assert fourth["cache"]["served"] is False and fourth["cache"]["stored"] is True, fourth
    assert again == copied


def test_a_collection_whose_snapshots_cannot_be_taken_is_forked_and_not_cached(
    read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards the run's server does not hold itself (as on a cluster's other nodes) give
    no snapshot: the fork goes on, verified, and leaves no entry, not even a temporary
    folder."""
    from omnilab.services.qdrant import servers

    fill_docs(read_only, n=500)
    monkeypatch.setattr(servers.QdrantServer, "shards", lambda self, name: None)
    seed, copied = fork_docs()
    assert seed["cache"]["stored"] is False and seed["cache"]["served"] is False, seed
    assert seed["run"]["checksum"] == seed["production"]["checksum"]
    assert len(copied["points"]) == 500
    cache = _cache()
    assert not [e for e in cache.entries() if e.service == "qdrant"]
    assert not list(cache.folder.glob(".tmp-*"))
