"""Production for promotion tests: real servers apart from every run's own stack.

Redis, PostgreSQL and Qdrant are real servers started once per session by omnilab's local
runtime (their own ports, storage and credentials; Qdrant with an API key) and emptied
before each test. Qdrant's server is the ``qdrant`` program on PATH or in
OMNILAB_QDRANT_BINARY: without one the tests fail, saying so. Each test gets its own
tracking database, so promotions of one test never meet another's.

``snapshot()`` captures everything production holds, to show "exactly as before".
``Production`` also serves a local-mode production (``QDRANT_URL=file:///...``), which
the embedded-mode tests set up themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from qdrant_client import QdrantClient

import omnilab
from omnilab import Postgres, Qdrant, Redis, Stack
from omnilab.errors import OmnilabError
from omnilab.progress import QuietReporter
from tests.support import EXPERIMENTS

EXPERIMENT = str(EXPERIMENTS / "promotable.py")


@dataclass
class Production:
    redis_url: str
    postgres_url: str
    #: ``http://127.0.0.1:port`` of the production Qdrant server, or ``file:///folder``.
    qdrant_url: str
    qdrant_api_key: str | None = None

    def redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.redis_url)

    def pg(self) -> psycopg.Connection:
        return psycopg.connect(self.postgres_url, autocommit=True)

    def qdrant(self) -> QdrantClient:
        """Open only around a use: local mode allows one client per folder at a time."""
        if self.qdrant_url.startswith("file://"):
            return QdrantClient(path=self.qdrant_url[len("file://") :])
        return QdrantClient(url=self.qdrant_url, api_key=self.qdrant_api_key, https=False)

    def snapshot(self) -> dict[str, Any]:
        return {"redis": self.redis_state(), "pg": self.pg_state(), "qdrant": self.qdrant_state()}

    def redis_state(self) -> dict[bytes, tuple[bytes, bool]]:
        client = self.redis()
        try:
            return {k: (client.dump(k), client.pttl(k) > 0) for k in sorted(client.scan_iter())}
        finally:
            client.close()

    def pg_state(self) -> dict[str, Any]:
        with self.pg() as conn:
            schemas = [
                r[0]
                for r in conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                    "AND nspname <> 'information_schema' ORDER BY 1"
                )
            ]
            tables = conn.execute(
                "SELECT n.nspname, c.relname, c.oid FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                "AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' "
                "ORDER BY 1, 2"
            ).fetchall()
            rows = {
                f"{s}.{t}": (
                    oid,
                    conn.execute(f'SELECT * FROM "{s}"."{t}" ORDER BY 1').fetchall(),
                )
                for s, t, oid in tables
            }
        return {"schemas": schemas, "tables": rows}

    def qdrant_state(self) -> dict[str, Any]:
        """Aliases, and each collection's configuration, payload indexes and points."""
        if self.qdrant_url.startswith("file://") and not Path(self.qdrant_url[7:]).exists():
            return {"aliases": [], "collections": {}}
        client = self.qdrant()
        try:
            found = client.get_aliases().aliases
            aliases = sorted((a.alias_name, a.collection_name) for a in found)
            collections = {}
            for c in sorted(x.name for x in client.get_collections().collections):
                info = client.get_collection(c)
                points, _ = client.scroll(c, limit=100_000, with_vectors=True, with_payload=True)
                collections[c] = {
                    "params": info.config.params.model_dump(),
                    "indexes": {k: v.data_type for k, v in (info.payload_schema or {}).items()},
                    "points": sorted((str(p.id), repr(p.payload), repr(p.vector)) for p in points),
                }
            return {"aliases": aliases, "collections": collections}
        finally:
            client.close()

    def points(self, name: str) -> dict[Any, Any]:
        client = self.qdrant()
        try:
            found, _ = client.scroll(name, limit=100_000, with_vectors=True, with_payload=True)
            return {p.id: p for p in found}
        finally:
            client.close()


@pytest.fixture(scope="session", name="production_servers")
def production_servers_fixture(session_stack: Any) -> Iterator[Stack]:
    stack = Stack(
        Redis(decode_responses=False),
        Postgres(database="omnimind"),
        Qdrant(embedded=False),
        runtime="local",
        reporter=QuietReporter(),
    )
    try:
        stack.start()  # no skip: without production servers the tests must fail
    except OmnilabError as exc:
        pytest.fail(
            f"promotion tests need production servers: {exc} (CI puts ../shared/bin, "
            "which holds Qdrant's server, on PATH)",
            pytrace=False,
        )
    yield stack
    stack.close()


def _reset(stack: Stack) -> None:
    client = stack.redis
    client.config_set("maxmemory", 0)
    client.flushall()
    pg = stack.postgres
    pg.execute("ALTER ROLE omnimind RESET ALL")
    for (schema,) in pg.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
        "AND nspname <> 'information_schema'"
    ).fetchall():
        pg.execute(f'DROP SCHEMA "{schema}" CASCADE')
    pg.execute("CREATE SCHEMA public")
    for (role,) in pg.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'reader%'"):
        pg.execute(f'DROP ROLE "{role}"')
    qdrant = stack.qdrant
    from qdrant_client import models

    qdrant.update_collection_aliases(
        change_aliases_operations=[
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=a.alias_name))
            for a in qdrant.get_aliases().aliases
        ]
    )
    for collection in qdrant.get_collections().collections:
        qdrant.delete_collection(collection.name)


@pytest.fixture(name="production")
def production_fixture(
    production_servers: Stack,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tracking_url: str,
) -> Iterator[Production]:
    _reset(production_servers)
    env = production_servers.env
    qdrant = production_servers.endpoint("qdrant")
    monkeypatch.setenv("REDIS_URL", env["REDIS_URL"])
    monkeypatch.setenv("POSTGRES_URL", env["POSTGRES_URL"])
    monkeypatch.setenv("QDRANT_URL", env["QDRANT_URL"])
    monkeypatch.setenv("QDRANT_API_KEY", env["QDRANT_API_KEY"])
    monkeypatch.setenv("QDRANT_GRPC_PORT", str(qdrant.ports["grpc"]))
    # A tracking database of this test's own: no promotion of another test is seen.
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(tracking_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    monkeypatch.setenv(
        "OMNILAB_TRACKING_URL", make_conninfo(**{**conninfo_to_dict(tracking_url), "dbname": name})
    )
    yield Production(
        env["REDIS_URL"], env["POSTGRES_URL"], env["QDRANT_URL"], env["QDRANT_API_KEY"]
    )
    with psycopg.connect(tracking_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_promotable(**params: Any) -> omnilab.Run:
    run = omnilab.run(EXPERIMENT, params=params, reporter=QuietReporter())
    assert run.ok, run.error
    return run


def seed_production(prod: Production) -> None:
    """Production data of its own, some under the names the run promotes."""
    from qdrant_client import models

    client = prod.redis()
    client.set("emb:0", "production value")
    client.set("emb:only-in-production", "p", ex=7200)
    client.hset("emb:1", mapping={"old": "yes"})
    client.set("unrelated", "keep me")
    client.close()
    with prod.pg() as conn:
        conn.execute("CREATE TABLE scores (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO scores VALUES (1, 'production row'), (2, 'another')")
        conn.execute("CREATE TABLE unrelated (x int)")
        conn.execute("INSERT INTO unrelated VALUES (42)")
        conn.execute("CREATE ROLE reader")
        conn.execute("GRANT SELECT ON scores TO reader")
    q = prod.qdrant()
    try:
        for name in ("docs", "unrelated"):
            q.create_collection(
                name, vectors_config=models.VectorParams(size=8, distance=models.Distance.DOT)
            )
            q.upsert(name, [models.PointStruct(id=1, vector=[1.0] * 8, payload={"prod": name})])
    finally:
        q.close()
