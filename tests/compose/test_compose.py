"""``omnilab compose export`` and the committed compose file, against real docker-compose.

docker-compose here is v1 (Debian's 1.29), which has no ``up --wait``: the test starts
the services with ``up -d`` and waits for their healthchecks itself, through the engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
import warnings
from pathlib import Path

import httpx
import psycopg
import redis
import yaml
from qdrant_client import QdrantClient, models

from omnilab.compose import render, render_gpu
from tests.support import ROOT, free_port, run_cli
from tests.support.docker_support import (
    POSTGRES_IMAGE,
    QDRANT_IMAGE,
    REDIS_IMAGE,
    docker_client,
)

COMMITTED = ROOT / "compose" / "docker-compose-experiments.yml"
COMMITTED_GPU = ROOT / "compose" / "docker-compose-experiments.gpu.yml"
COMPOSE = shutil.which("docker-compose")


def _compose(env_file: Path, compose_file: Path | list[Path], *args: str, project: str, **env: str):
    assert COMPOSE, "docker-compose is not installed (apt-get install docker-compose)"
    files = compose_file if isinstance(compose_file, list) else [compose_file]
    chosen = [arg for f in files for arg in ("-f", str(f))]
    return subprocess.run(
        [COMPOSE, "--env-file", str(env_file), *chosen, "-p", project, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        check=False,
    )


def test_the_committed_files_are_the_export() -> None:
    assert COMMITTED.read_text() == render(), "run `omnilab compose export` and commit it"
    assert COMMITTED_GPU.read_text() == render_gpu(), "run `omnilab compose export`, commit it"


def test_export_writes_the_file_and_a_private_env_file(workdir: Path) -> None:
    result = run_cli("compose", "export")
    assert result.returncode == 0, result.stderr
    written = workdir / "compose" / "docker-compose-experiments.yml"
    env_file = workdir / "compose" / ".env.experiments"
    assert written.read_text() == COMMITTED.read_text()
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines()[1:])
    assert set(values) == {"QDRANT_API_KEY", "REDIS_PASSWORD", "POSTGRES_PASSWORD"}
    assert all(len(v) >= 24 for v in values.values())
    # No secret in the compose file; exporting again keeps the secrets it has.
    assert not any(v in written.read_text() for v in values.values())
    assert run_cli("compose", "export").returncode == 0
    assert env_file.read_text().splitlines()[1:] == [f"{k}={v}" for k, v in values.items()]


def test_the_file_mends_the_seeds_faults() -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    services = doc["services"]
    assert set(services) >= {"qdrant-exp", "redis-exp", "postgres-exp", "ollama-exp"}
    production = {"6333", "6334", "6379", "5432", "11434"}
    for name, service in services.items():
        assert "latest" not in service["image"], name
        for port in service.get("ports", []):
            host, published = port.split(":")[0], port.split(":")[1].split("-")[-1]
            assert host == "127.0.0.1", port
            assert published.rstrip("}") not in production, port
        if name.endswith("-exp"):
            assert "test" in service["healthcheck"], name
    assert "QDRANT__SERVICE__API_KEY" in services["qdrant-exp"]["environment"]
    # GPUs in a file of their own, so that the stack starts on hosts without any.
    assert not [name for name, service in services.items() if "deploy" in service]
    gpu = yaml.safe_load(COMMITTED_GPU.read_text())["services"]
    assert set(gpu) == {"ollama-exp", "omnimind-experiments"}
    for service in gpu.values():
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    depends = services["omnimind-experiments"]["depends_on"]
    assert {c["condition"] for c in depends.values()} == {"service_healthy"}


def test_export_of_one_experiment_has_only_its_services(workdir: Path) -> None:
    from tests.support import EXPERIMENTS

    text = render(f"{EXPERIMENTS / 'pair.py'}")
    doc = yaml.safe_load(text)
    assert set(doc["services"]) == {
        "redis-exp",
        "postgres-exp",
        "omnimind-experiments",
        "omnimind-code-gen",
    }
    # gpu = "auto": the experiments container may take GPUs; gpu = False: it may not.
    assert yaml.safe_load(render_gpu(f"{EXPERIMENTS / 'pair.py'}"))["services"].keys() == {
        "omnimind-experiments"
    }
    assert render_gpu(f"{EXPERIMENTS / 'recorded.py'}") is None
    assert "gpu.yml" not in render(f"{EXPERIMENTS / 'recorded.py'}")  # no file to point at
    assert "-f docker-compose-experiments.gpu.yml" in render()
    exported = run_cli("compose", "export", EXPERIMENTS / "recorded.py")
    assert exported.returncode == 0, exported.stderr
    assert not (workdir / "compose" / "docker-compose-experiments.gpu.yml").exists()
    bad = run_cli("compose", "export", "no-such-file.py")
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_an_env_file_without_a_last_newline_keeps_its_secret(workdir: Path) -> None:
    env_file = workdir / "compose" / ".env.experiments"
    env_file.parent.mkdir()
    env_file.write_text("QDRANT_API_KEY=mine")
    assert run_cli("compose", "export").returncode == 0
    lines = env_file.read_text().splitlines()
    assert lines[0] == "QDRANT_API_KEY=mine"
    assert {line.split("=")[0] for line in lines} == {
        "QDRANT_API_KEY",
        "REDIS_PASSWORD",
        "POSTGRES_PASSWORD",
    }


def test_docker_compose_accepts_it_and_refuses_it_without_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / ".env.experiments"
    env_file.write_text("QDRANT_API_KEY=a\nREDIS_PASSWORD=b\nPOSTGRES_PASSWORD=c\n")
    project = f"omnilab-test-{uuid.uuid4().hex[:8]}"
    ok = _compose(env_file, COMMITTED, "config", "-q", project=project)
    assert ok.returncode == 0, ok.stderr
    merged = _compose(env_file, [COMMITTED, COMMITTED_GPU], "config", project=project)
    assert merged.returncode == 0, merged.stderr
    services = yaml.safe_load(merged.stdout)["services"]
    assert services["ollama-exp"]["deploy"]["resources"]["reservations"]["devices"]
    assert services["ollama-exp"]["image"] and services["ollama-exp"]["healthcheck"]
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = _compose(empty, COMMITTED, "config", "-q", project=project)
    assert refused.returncode != 0
    assert "is not set: pass --env-file with .env.experiments" in refused.stderr


def _health(project: str) -> dict[str, str]:
    client = docker_client()
    found = client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    return {
        c.labels["com.docker.compose.service"]: c.attrs["State"].get("Health", {}).get("Status")
        or c.status
        for c in found
    }


def test_redis_postgres_and_qdrant_come_up_healthy_and_go(tmp_path: Path, docker_images) -> None:
    env_file = tmp_path / ".env.experiments"
    env_file.write_text(
        "QDRANT_API_KEY=qdrant-key\nREDIS_PASSWORD=redis-secret\nPOSTGRES_PASSWORD=pg-s\n"
    )
    project = f"omnilab-test-{uuid.uuid4().hex[:8]}"
    ports = {
        "OMNILAB_PORT_REDIS": str(free_port()),
        "OMNILAB_PORT_POSTGRES": str(free_port()),
        "OMNILAB_PORT_QDRANT_HTTP": str(free_port()),
        "OMNILAB_PORT_QDRANT_GRPC": str(free_port()),
    }
    services = ["redis-exp", "postgres-exp", "qdrant-exp"]
    try:
        up = _compose(env_file, COMMITTED, "up", "-d", *services, project=project, **ports)
        assert up.returncode == 0, up.stderr
        # `up --wait` of compose v2, by hand: every container healthy (Qdrant's check is
        # its /readyz).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            health = _health(project)
            if health and all(v == "healthy" for v in health.values()):
                break
            assert "unhealthy" not in health.values(), health
            time.sleep(0.5)
        assert _health(project) == dict.fromkeys(services, "healthy")
        images = {
            c.image.tags[0]
            for c in docker_client().containers.list(
                filters={"label": f"com.docker.compose.project={project}"}
            )
        }
        assert images == {REDIS_IMAGE, POSTGRES_IMAGE, QDRANT_IMAGE}
        r = redis.Redis(port=int(ports["OMNILAB_PORT_REDIS"]), password="redis-secret")
        assert r.ping()
        r.close()
        with psycopg.connect(
            host="127.0.0.1",
            port=ports["OMNILAB_PORT_POSTGRES"],
            user="omnimind",
            password="pg-s",
            dbname="omnimind_exp",
        ) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        # A point written and read back through the service, with the env file's key.
        qdrant = f"http://127.0.0.1:{ports['OMNILAB_PORT_QDRANT_HTTP']}"
        assert httpx.get(f"{qdrant}/collections").status_code == 401
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Api key is used with an insecure")
            client = QdrantClient(url=qdrant, api_key="qdrant-key", timeout=30)
        try:
            client.create_collection(
                "c", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
            )
            client.upsert("c", [models.PointStruct(id=1, vector=[0.5, 1.0], payload={"k": "v"})])
            (point,) = client.retrieve("c", [1], with_vectors=True)
            assert point.payload == {"k": "v"} and point.vector == [0.5, 1.0]
        finally:
            client.close()
    finally:
        down = _compose(env_file, COMMITTED, "down", "-v", "--remove-orphans", project=project)
    assert down.returncode == 0, down.stderr
    assert _health(project) == {}
