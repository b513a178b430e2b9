"""`omnilab doctor`: one line per check, hints, and an exit status scripts can use."""

from __future__ import annotations

import json

import pytest

from omnilab import Redis, Stack
from omnilab.progress import QuietReporter
from tests.support import free_port, run_cli

pytestmark = pytest.mark.usefixtures("docker_scope")


def _checks(env: dict[str, str] | None = None) -> tuple[int, dict[str, dict]]:
    result = run_cli("doctor", "--json", env=env)
    return result.returncode, {c["name"]: c for c in json.loads(result.stdout)}


def test_doctor_reports_engine_images_gpu_ports_and_production() -> None:
    dead = free_port()
    with Stack(Redis(), runtime="local", reporter=QuietReporter()) as production:
        env = {
            "REDIS_URL": production.env["REDIS_URL"],
            "QDRANT_URL": f"http://127.0.0.1:{dead}",
        }
        code, checks = _checks(env)
    assert code == 0, checks
    assert checks["docker engine"]["status"] == "ok"
    assert "Docker" in checks["docker engine"]["detail"]
    assert checks["image redis"]["status"] == "ok"
    assert "omnilab/redis:7.0-bookworm" in checks["image redis"]["detail"]
    assert checks["image qdrant"]["status"] == "ok"
    assert "omnilab/qdrant:1.19.0-bookworm (built locally" in checks["image qdrant"]["detail"]
    # The Qdrant binary the local runtime would run, and its version.
    local_qdrant = checks["local qdrant"]
    assert local_qdrant["status"] == "ok"
    assert local_qdrant["detail"].startswith("qdrant 1.19.0 server (/")
    assert checks["gpu"]["status"] == "ok"
    assert checks["ports"]["status"] == "ok"
    assert checks["tracking store"]["status"] == "ok"
    redis_check = checks["production REDIS_URL"]
    assert redis_check["status"] == "ok"
    assert "****" in redis_check["detail"]  # the password never shows
    assert production.endpoint("redis").credentials.password not in json.dumps(checks)
    qdrant_check = checks["production QDRANT_URL"]
    assert qdrant_check["status"] == "warn" and "does not answer" in qdrant_check["detail"]
    assert "omnilab promote" in qdrant_check["hint"]


def test_doctor_fails_when_docker_is_required_and_absent() -> None:
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock", "OMNILAB_RUNTIME": "docker"}
    code, checks = _checks(env)
    assert code == 1
    engine = checks["docker engine"]
    assert engine["status"] == "problem" and "no Docker engine answers" in engine["detail"]
    assert "DOCKER_HOST" in engine["hint"]
    # Under auto the same engine trouble is only a warning: runs fall back to local.
    code, checks = _checks({"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert code == 0 and checks["docker engine"]["status"] == "warn"


def test_doctor_text_output_and_strict_mode() -> None:
    result = run_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("ok") and "docker engine" in first
    assert "hint:" in result.stdout
    strict = run_cli("doctor", "--strict")
    assert strict.returncode == 1  # the Qdrant image is missing here: a warning


def test_doctor_fits_80_columns() -> None:
    """Long details (URLs, paths, hints) wrap inside their cell, indented under it."""
    result = run_cli("doctor", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    # A wrapped detail or a hint continues in the detail's column, not at column 0.
    continued = [line for line in lines if line[:1] == " "]
    assert continued and all(line.startswith(" " * 12) for line in continued)
    assert any(line.strip().startswith("hint:") for line in lines)
