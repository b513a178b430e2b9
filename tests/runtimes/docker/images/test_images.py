"""`omnilab images`: images built from Debian packages behave like the official ones."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from omnilab.errors import UsageError
from omnilab.progress import QuietReporter
from omnilab.runtimes.docker.images import build, status
from tests.support import ROOT, qdrant_server, run_cli, wait_until
from tests.support.docker_support import (
    OLLAMA_STANDIN,
    OLLAMA_STANDIN_IMAGE,
    POSTGRES_IMAGE,
    QDRANT_IMAGE,
    REDIS_IMAGE,
    docker_client,
)

pytestmark = pytest.mark.usefixtures("docker_scope")


def _scope(docker_scope: str) -> dict[str, str]:
    return {"omnilab-test": docker_scope}


def _host_port(container, native: str) -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"][native][0]["HostPort"])


def test_build_is_cached_by_tag_and_says_so() -> None:
    began = time.monotonic()
    result = run_cli("images", "build")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - began < 30
    # Qdrant's image is in the default set where a Qdrant binary is found (CI: on PATH).
    for tag in ("omnilab/debian:bookworm", REDIS_IMAGE, POSTGRES_IMAGE, QDRANT_IMAGE):
        assert f"{tag}  cached" in result.stdout
    assert "is current (cached)" in result.stderr
    listed = {i["name"]: i for i in json.loads(run_cli("images", "ls", "--json").stdout)}
    for name in ("base", "redis", "postgres", "qdrant"):
        assert listed[name]["present"] and listed[name]["stale"] is None
    # The tests' own image is built by the same builder, but omnilab does not list it.
    assert "ollama-standin" not in listed
    standin = status(docker_client(), OLLAMA_STANDIN)
    assert standin.present and standin.stale is None


def test_a_changed_recipe_marks_the_image_stale(tmp_path: Path) -> None:
    recipes = tmp_path / "dockerfiles"
    shutil.copytree(ROOT / "dockerfiles", recipes)
    entrypoint = recipes / "redis" / "docker-entrypoint.sh"
    entrypoint.write_text(entrypoint.read_text() + "# changed\n")
    listed = run_cli("images", "ls", "--json", env={"OMNILAB_DOCKERFILES": str(recipes)})
    by_name = {i["name"]: i for i in json.loads(listed.stdout)}
    assert by_name["redis"]["stale"] == "its recipe changed since it was built"
    assert by_name["postgres"]["stale"] is None
    # The binary a Qdrant image is built from is part of its recipe, by content: another
    # build of the same version (a byte more here) makes the image stale too.
    binary = tmp_path / "qdrant"
    shutil.copy(qdrant_server(), binary)
    with open(binary, "ab") as fh:
        fh.write(b"\0")
    listed = run_cli("images", "ls", "--json", env={"OMNILAB_QDRANT_BINARY": str(binary)})
    by_name = {i["name"]: i for i in json.loads(listed.stdout)}
    assert by_name["qdrant"]["stale"] == "its recipe changed since it was built"
    assert by_name["redis"]["stale"] is None


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("ollama", "docker save | docker load"),
        ("mongodb", "unknown image 'mongodb'"),
    ],
)
def test_images_it_cannot_build_are_refused_with_what_to_do(name: str, words: str) -> None:
    result = run_cli("images", "build", name)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr


def test_qdrant_image_needs_the_pinned_qdrant_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused in one line before any build: a program that is not Qdrant, another
    version than the tag names, no binary at all, --binary for an image without one."""
    true = shutil.which("true")
    refused = run_cli("images", "build", "qdrant", "--binary", str(true))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"qdrant: {true} (--binary) is not a Qdrant server binary" in refused.stderr
    assert "building" not in refused.stderr

    other = tmp_path / "qdrant"
    other.write_text("#!/bin/sh\necho 'qdrant 1.18.2'\n")
    other.chmod(0o755)
    with pytest.raises(UsageError, match=r"is Qdrant 1\.18\.2, but omnilab/qdrant:1\.19\.0-"):
        build(["qdrant"], QuietReporter(), binary=other)
    path = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "qdrant").exists()
    )
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("OMNILAB_QDRANT_BINARY", raising=False)
    with pytest.raises(UsageError, match=r"needs a Qdrant 1\.19\.0 server binary"):
        build(["qdrant"], QuietReporter())
    with pytest.raises(UsageError, match=r"--binary goes with one image .*: qdrant"):
        build(["redis"], QuietReporter(), binary=other)


def test_qdrant_image_has_the_official_interface(docker_scope: str) -> None:
    """QDRANT__SERVICE__API_KEY, /qdrant/storage, /readyz on 6333 (gRPC 6334), an
    unprivileged server, and the compose healthcheck's readiness test."""
    from omnilab.services.qdrant import Qdrant

    config = docker_client().images.get(QDRANT_IMAGE).attrs["Config"]
    assert {"6333/tcp", "6334/tcp"} <= set(config["ExposedPorts"])
    container = docker_client().containers.run(
        QDRANT_IMAGE,
        detach=True,
        environment={"QDRANT__SERVICE__API_KEY": "k-1"},
        ports={"6333/tcp": ("127.0.0.1", None)},
        tmpfs={"/qdrant/storage": ""},
        labels=_scope(docker_scope),
    )
    try:
        base = f"http://127.0.0.1:{_host_port(container, '6333/tcp')}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, timeout=30), container.logs().decode()
        assert httpx.get(f"{base}/collections").status_code == 401
        created = httpx.put(
            f"{base}/collections/c",
            headers={"api-key": "k-1"},
            json={"vectors": {"size": 2, "distance": "Dot"}},
        )
        assert created.status_code == 200, created.text
        listing = container.exec_run(["ls", "/qdrant/storage/collections"]).output
        assert b"c" in listing.split()
        top = container.top(ps_args="-o pid,user,args")["Processes"]
        assert all(row[1] != "root" for row in top), top
        healthcheck = Qdrant().compose_healthcheck(Qdrant().new_credentials())
        assert container.exec_run(healthcheck[1:]).exit_code == 0
    finally:
        container.remove(force=True, v=True)


def test_postgres_image_honours_the_official_environment(docker_scope: str) -> None:
    client = docker_client()
    container = client.containers.run(
        POSTGRES_IMAGE,
        detach=True,
        environment={"POSTGRES_USER": "alice", "POSTGRES_PASSWORD": "s3cret", "POSTGRES_DB": "lab"},
        ports={"5432/tcp": ("127.0.0.1", None)},
        labels=_scope(docker_scope),
    )
    try:
        assert wait_until(
            lambda: container.exec_run(["pg_isready", "-q"]).exit_code == 0, timeout=30
        ), container.logs().decode()
        port = _host_port(container, "5432/tcp")

        def connects() -> bool:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=port, user="alice", password="s3cret", dbname="lab"
                ) as conn:
                    return conn.execute("select current_user").fetchone() == ("alice",)
            except psycopg.OperationalError:
                return False

        assert wait_until(connects, timeout=30)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=port, user="alice", password="no", dbname="lab")
        assert container.attrs["Config"]["StopSignal"] == "SIGINT"
        # Like `initdb --username alice`: the superuser is alice, there is no postgres role.
        roles = container.exec_run(
            ["psql", "-U", "alice", "-d", "lab", "-tAc", "select rolname from pg_roles "
             "where rolsuper"]
        )  # fmt: skip
        assert roles.output.split() == [b"alice"], roles.output
        assert b"s3cret" not in container.logs()
        top = container.top(ps_args="-o pid,user,args")["Processes"]
        assert all(row[1] != "root" for row in top), top
    finally:
        container.remove(force=True, v=True)


def test_postgres_image_runs_initdb_for_custom_initdb_args(docker_scope: str) -> None:
    """The fast path copies a cluster made at build time; POSTGRES_INITDB_ARGS needs a
    cluster of its own, and gets one."""
    client = docker_client()
    container = client.containers.run(
        POSTGRES_IMAGE,
        detach=True,
        environment={"POSTGRES_PASSWORD": "pw", "POSTGRES_INITDB_ARGS": "--data-checksums"},
        labels=_scope(docker_scope),
    )
    try:
        assert wait_until(
            lambda: container.exec_run(["pg_isready", "-q"]).exit_code == 0, timeout=60
        ), container.logs().decode()
        shown = container.exec_run(["psql", "-U", "postgres", "-tAc", "show data_checksums"])
        assert shown.output.strip() == b"on", shown.output
        assert b"cluster copied" not in container.logs()
    finally:
        container.remove(force=True, v=True)


def test_postgres_image_without_a_password_explains_and_exits(docker_scope: str) -> None:
    client = docker_client()
    container = client.containers.run(POSTGRES_IMAGE, detach=True, labels=_scope(docker_scope))
    try:
        assert container.wait(timeout=30)["StatusCode"] == 1
        assert b"POSTGRES_PASSWORD is not set" in container.logs()
    finally:
        container.remove(force=True, v=True)


def test_redis_image_honours_requirepass_and_drops_root(docker_scope: str) -> None:
    client = docker_client()
    container = client.containers.run(
        REDIS_IMAGE,
        ["redis-server", "--requirepass", "pw"],
        detach=True,
        ports={"6379/tcp": ("127.0.0.1", None)},
        labels=_scope(docker_scope),
    )
    try:
        port = _host_port(container, "6379/tcp")
        authed = redis.Redis(port=port, password="pw", socket_connect_timeout=1)
        assert wait_until(lambda: _pings(authed), timeout=15), container.logs().decode()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        top = container.top(ps_args="-o pid,user,args")["Processes"]
        assert all(row[1] != "root" for row in top), top
    finally:
        container.remove(force=True, v=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_ollama_standin_image_has_the_official_interface(docker_scope: str) -> None:
    import httpx

    image = docker_client().images.get(OLLAMA_STANDIN_IMAGE)
    config = image.attrs["Config"]
    assert "11434/tcp" in config["ExposedPorts"]
    assert "OLLAMA_HOST=0.0.0.0:11434" in config["Env"]
    assert config["Cmd"] == ["serve"]
    container = docker_client().containers.run(
        OLLAMA_STANDIN_IMAGE,
        detach=True,
        ports={"11434/tcp": ("127.0.0.1", None)},
        labels=_scope(docker_scope),
    )
    try:
        url = f"http://127.0.0.1:{_host_port(container, '11434/tcp')}/api/tags"

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(answers, timeout=15), container.logs().decode()
    finally:
        container.remove(force=True, v=True)


def test_a_wheelhouse_alone_makes_the_images_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The air-gapped route: with OMNILAB_WHEELHOUSE, pip asks no index (`--no-index`),
    and omnilab's own wheel builds without fetching a build backend."""
    from omnilab.progress import QuietReporter
    from omnilab.runtimes.docker.images import wheels

    first = wheels.build_wheelhouse(tmp_path / "connected", QuietReporter())
    monkeypatch.setenv("OMNILAB_WHEELHOUSE", str(tmp_path / "connected" / "deps"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/no-index-here")
    again = wheels.build_wheelhouse(tmp_path / "air-gapped", QuietReporter())
    assert sorted(p.name for p in again) == sorted(p.name for p in first)
    assert [p.parent.name for p in again if p.name.startswith("omnilab-")] == ["own"]
