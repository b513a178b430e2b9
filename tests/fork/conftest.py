"""Production for fork tests, reached with credentials that allow reading only.

The promotion tests' production servers (``production``) are filled with the admin's
credentials; the fork then gets a PostgreSQL role with SELECT alone, a Redis ACL user with
``+@read`` alone, and a Qdrant server of its own started with a read-only API key
(``QDRANT__SERVICE__READ_ONLY_API_KEY``): the variables omnilab reads name those.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from qdrant_client import QdrantClient, models

from tests.support import free_port, qdrant_server, wait_until
from tests.support.promotion_support import Production


@dataclass
class QdrantReadOnly:
    url: str
    grpc_port: int
    admin_key: str
    read_key: str

    def admin(self) -> QdrantClient:
        return QdrantClient(url=self.url, api_key=self.admin_key, https=False)


@pytest.fixture(scope="session")
def qdrant_read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantReadOnly]:
    """A Qdrant server with an admin key and a read-only key, for the whole session."""
    folder = tmp_path_factory.mktemp("qdrant-ro")
    http, grpc = free_port(), free_port()
    admin, read = secrets.token_hex(16), secrets.token_hex(16)
    env = {
        **os.environ,
        "QDRANT__SERVICE__HOST": "127.0.0.1",
        "QDRANT__SERVICE__HTTP_PORT": str(http),
        "QDRANT__SERVICE__GRPC_PORT": str(grpc),
        "QDRANT__SERVICE__API_KEY": admin,
        "QDRANT__SERVICE__READ_ONLY_API_KEY": read,
        "QDRANT__STORAGE__STORAGE_PATH": str(folder / "storage"),
        "QDRANT__STORAGE__SNAPSHOTS_PATH": str(folder / "snapshots"),
        "QDRANT__TELEMETRY_DISABLED": "true",
    }
    log = open(folder / "qdrant.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [str(qdrant_server())], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    server = QdrantReadOnly(f"http://127.0.0.1:{http}", grpc, admin, read)

    def up() -> bool:
        try:
            client = server.admin()
            client.get_collections()
            client.close()
            return True
        except Exception:
            return False

    try:
        assert wait_until(up, timeout=30), (folder / "qdrant.log").read_text()[-2000:]
        yield server
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()


@dataclass
class ReadOnly:
    """Production as the admin sees it (to fill and check it), and the read-only URLs."""

    admin: Production
    qdrant: QdrantReadOnly
    env: dict[str, str]

    def qdrant_state(self) -> dict[str, Any]:
        client = self.qdrant.admin()
        try:
            out = {}
            for c in sorted(x.name for x in client.get_collections().collections):
                points, _ = client.scroll(c, limit=100_000, with_vectors=True, with_payload=True)
                out[c] = sorted((str(p.id), repr(p.payload), repr(p.vector)) for p in points)
            return {"aliases": sorted(a.alias_name for a in client.get_aliases().aliases), **out}
        finally:
            client.close()

    def snapshot(self) -> dict[str, Any]:
        return {
            "redis": self.admin.redis_state(),
            "pg": self.admin.pg_state(),
            "qdrant": self.qdrant_state(),
        }


def _reset_qdrant(server: QdrantReadOnly) -> None:
    client = server.admin()
    try:
        for collection in client.get_collections().collections:
            client.delete_collection(collection.name)
    finally:
        client.close()


@pytest.fixture(name="read_only")
def read_only_fixture(
    production: Production, qdrant_read_only: QdrantReadOnly, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ReadOnly]:
    """Production with read-only credentials in REDIS_URL, POSTGRES_URL and QDRANT_*;
    the test fills it through ``admin`` first, then calls :func:`grant` (tables created
    after it are not readable by the role)."""
    _reset_qdrant(qdrant_read_only)
    password = secrets.token_hex(8)
    with production.pg() as conn:
        conn.execute(f"CREATE ROLE reader_fork LOGIN PASSWORD '{password}'")
        conn.execute("GRANT USAGE ON SCHEMA public TO reader_fork")
        conn.execute(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reader_fork"
        )
        conn.execute(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO reader_fork"
        )
    pg = conninfo_to_dict(production.postgres_url)
    pg_url = make_conninfo(**{**pg, "user": "reader_fork", "password": password})
    client = production.redis()
    client.acl_setuser(
        "reader_fork",
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        categories=["-@all", "+@read"],
        reset=True,
    )
    client.close()
    parts = urlsplit(production.redis_url)
    redis_url = f"redis://reader_fork:{password}@{parts.hostname}:{parts.port}/0"
    env = {
        "POSTGRES_URL": pg_url,
        "REDIS_URL": redis_url,
        "QDRANT_URL": qdrant_read_only.url,
        "QDRANT_API_KEY": qdrant_read_only.read_key,
        "QDRANT_GRPC_PORT": str(qdrant_read_only.grpc_port),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield ReadOnly(production, qdrant_read_only, env)
    client = production.redis()
    client.acl_deluser("reader_fork")
    client.close()
    with production.pg() as conn:
        conn.execute("DROP OWNED BY reader_fork")


def fill(ro: ReadOnly, *, users: int = 10, keys: int = 12, points: int = 30) -> None:
    """Production data of every kind the fork copies."""
    with ro.admin.pg() as conn:
        conn.execute(
            "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, active boolean,"
            " joined timestamptz DEFAULT now(), tags text[])"
        )
        conn.execute(
            "INSERT INTO users (name, active, tags) SELECT 'user ' || i, i %% 2 = 0,"
            " ARRAY['t' || (i %% 3)] FROM generate_series(1, %s) i",
            (users,),
        )
        conn.execute("CREATE INDEX users_name ON users (name)")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric)")
        conn.execute("INSERT INTO orders SELECT i, i % 5, i * 1.5 FROM generate_series(1, 7) i")
    r = ro.admin.redis()
    with r.pipeline() as pipe:
        for i in range(keys):
            kind = i % 4
            key = f"emb:{i}"
            if kind == 0:
                pipe.set(key, f"value {i}", ex=3600 if i % 8 == 0 else None)
            elif kind == 1:
                pipe.hset(key, mapping={"a": i, "b": "x" * 200 if i % 3 else "y"})
            elif kind == 2:
                pipe.rpush(key, "one", str(i))
            else:
                pipe.zadd(key, {"m": 1.25, f"n{i}": i})
        pipe.sadd("emb:set", *[f"member {j}" for j in range(300)])
        pipe.xadd("emb:stream", {"f": "v"})
        pipe.set("other", "not copied")
        pipe.execute()
    r.close()
    q = ro.qdrant.admin()
    try:
        q.create_collection(
            "docs", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
        )
        q.create_payload_index("docs", "kind", field_schema="keyword")
        q.upsert(
            "docs",
            [
                models.PointStruct(id=i, vector=[1.0, i, 0.5, -i], payload={"kind": f"k{i % 3}"})
                for i in range(points)
            ],
        )
    finally:
        q.close()


def fill_docs(ro: ReadOnly, n: int = 3000, *, shards: int = 1) -> None:
    """Production's ``docs``: ``n`` points of 8 dimensions, a payload index."""
    q = ro.qdrant.admin()
    try:
        q.create_collection(
            "docs",
            vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE),
            shard_number=shards,
        )
        q.create_payload_index("docs", "source", field_schema="keyword", wait=True)
        q.upsert(
            "docs",
            [
                models.PointStruct(
                    id=i,
                    vector=[(i % 7) + 1.0, 1.0, i / n, 0, 0, 0, 0, 1],
                    payload={"source": f"s{i % 3}"},
                )
                for i in range(n)
            ],
            wait=True,
        )
    finally:
        q.close()


def fork_docs(item: Any = None, runtime: str = "local", reporter: Any = None) -> tuple[dict, dict]:
    """A fork of production's ``docs`` (or ``item``) into a Qdrant server of the test's
    own: the seed's record, and the run's points (id, payload, vector). The fork's notes
    go to ``reporter`` (none by default)."""
    from omnilab import Qdrant, Stack
    from omnilab.config import get_settings
    from omnilab.fork import Fork
    from omnilab.progress import QuietReporter
    from omnilab.promote import QdrantCollection

    quiet = QuietReporter()
    with Stack(Qdrant(embedded=False), runtime=runtime, reporter=quiet) as run:
        fork = Fork.prepare([item or QdrantCollection("docs")], get_settings(), reporter or quiet)
        (seed,) = fork.copy(run)
        points, _ = run.qdrant.scroll(seed["run"]["collection"], limit=10_000, with_vectors=True)
        indexed = run.qdrant.get_collection(seed["run"]["collection"]).payload_schema
    return seed, {"points": {p.id: (p.payload, p.vector) for p in points}, "indexed": indexed}
