"""Schemathesis against the live server's OpenAPI document: every operation, generated
valid and invalid input, every check (no 500, documented status codes and schemas, auth
enforced). Real server, real Redis and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import TESTS
from queue_helpers import Api

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_nothing(api: Api, workdir: Path) -> None:
    key = api.keys.setdefault("all", _all_scopes_key())
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{api.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--request-timeout",
            "20",
            "--workers",
            "1",
            "--suppress-health-check",
            "too_slow",
        ],
        cwd=workdir,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
            "PYTHONPATH": str(TESTS),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert "Traceback" not in api.service.output


def _all_scopes_key() -> str:
    from queue_helpers import make_key

    return make_key("read", "run", "promote", name="schemathesis")
