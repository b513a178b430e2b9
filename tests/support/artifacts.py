"""What the artifact store's tests share: the experiment they run and how they run it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from tests.support import SUPPORT, run_cli

#: The experiments folder of these tests' workers (one experiment: Writer).
ARTIFACT_EXPERIMENTS = SUPPORT / "artifact_experiments"
WRITER = ARTIFACT_EXPERIMENTS / "writer.py"
CURVE = b"a,b\n1,2\n"


def blob(size: int) -> bytes:
    """What Writer's blob.bin holds."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_writer(*params: str, expect: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``omnilab run writer.py -p ... --json`` as a user would; the run as recorded, with
    what the command wrote on stderr under ``_stderr``."""
    args: list[str] = []
    for param in params:
        args += ["-p", param]
    done = run_cli("run", WRITER, *args, "--json", env=env)
    assert done.returncode == expect, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    data["_stderr"] = done.stderr
    return data


def forget_locally(run: dict[str, Any]) -> None:
    """Remove the run's folder, as another host would not have it: what is read after
    this comes from the store."""
    shutil.rmtree(Path(run["run_dir"]))
