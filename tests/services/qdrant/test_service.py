"""Qdrant under the local runtime: a real server process when a binary is found (the
tests' is ``../shared/bin/qdrant``, on PATH in CI), qdrant-client's embedded mode when
none is, and a one-line refusal for a binary that is not a Qdrant omnilab supports."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from qdrant_client import models

from omnilab import Qdrant, Stack, StackStartError
from omnilab.errors import ServiceUnavailable
from omnilab.progress import Reporter
from tests.support import HELLO, free_port, qdrant_server, run_cli, stack_processes


class Lines(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def _path_without_qdrant() -> str:
    return os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "qdrant").exists()
    )


def test_a_qdrant_binary_runs_as_the_stacks_server() -> None:
    binary = qdrant_server()
    lines = Lines()
    with Stack(Qdrant(), runtime="local", reporter=lines) as s:
        running = s.services["qdrant"]
        endpoint = s.endpoint("qdrant")
        # The stack's ports: 6335/6336 for the first stack, else moved and said so.
        if endpoint.ports != {"http": 6335, "grpc": 6336}:
            assert any("port 633" in line and "is busy" in line for line in lines.lines)
        assert running.handle["kind"] == "process" and running.version == "qdrant 1.19.0"
        assert running.source == f"qdrant 1.19.0 server ({binary}, from PATH)" or (
            "from OMNILAB_QDRANT_BINARY" in running.source
        )
        # Its own storage folder, private, in the stack's directory.
        data = Path(running.handle["data_dir"])
        assert (data / "storage").is_dir() and stat.S_IMODE(data.stat().st_mode) == 0o700
        # A fresh API key, required; never on the command line nor in the environment.
        key = endpoint.credentials.password
        assert key and len(key) >= 24
        base = f"http://127.0.0.1:{endpoint.ports['http']}"
        assert httpx.get(f"{base}/collections").status_code == 401
        assert httpx.get(f"{base}/readyz").status_code == 200
        pid = running.handle["pid"]
        for leak in ("cmdline", "environ"):
            assert key.encode() not in Path(f"/proc/{pid}/{leak}").read_bytes()
        assert all(not Path(f).exists() for f in running.handle["secret_files"])
        # ctx.qdrant is a client of that server...
        assert type(s.qdrant._client).__name__ == "QdrantRemote"
        s.qdrant.create_collection(
            "c", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
        )
        # ...and the exported variables let another process reach the same server.
        assert s.env == {"QDRANT_URL": base, "QDRANT_API_KEY": key}
        code = (
            "import os, warnings; warnings.simplefilter('ignore')\n"
            "from qdrant_client import QdrantClient, models\n"
            "c = QdrantClient(url=os.environ['QDRANT_URL'], api_key=os.environ['QDRANT_API_KEY'])\n"
            "point = models.PointStruct(id=7, vector=[1.0, 2.0], payload={'by': 'child'})\n"
            "c.upsert('c', [point])\n"
        )
        subprocess.run([sys.executable, "-c", code], env={**os.environ, **s.env}, check=True)
        (point,) = s.qdrant.retrieve("c", [7])
        assert point.payload == {"by": "child"}
    assert not data.exists()


def test_without_a_binary_qdrant_is_embedded_and_the_run_says_so(workdir: Path) -> None:
    """The README's first run on a fresh machine: no binary, qdrant-client's embedded
    mode, said on the start line and recorded (tests/cli/test_run.py runs the server)."""
    env = {"PATH": _path_without_qdrant(), "OMNILAB_QDRANT_BINARY": ""}
    embedded = run_cli("run", HELLO, "-p", "n_items=20", "--json", env=env)
    assert embedded.returncode == 0, embedded.stderr
    run = json.loads(embedded.stdout)
    assert run["summary"]["qdrant_points"] == 20
    qdrant = run["stack"]["services"]["qdrant"]
    assert qdrant["kind"] == "embedded" and qdrant["url"].startswith("file://")
    assert (
        "local mode (embedded, no server: no qdrant on PATH nor OMNILAB_QDRANT_BINARY)"
        in embedded.stderr
    )


def test_a_binary_that_is_not_a_supported_qdrant_is_one_line_and_starts_nothing(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    true = shutil.which("true")
    refused = run_cli("run", HELLO, env={"OMNILAB_QDRANT_BINARY": str(true)})
    assert refused.returncode == 2, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, refused.stderr
    assert (
        f"qdrant: {true} (OMNILAB_QDRANT_BINARY) is not a Qdrant server binary "
        "(`--version` says 'true (GNU coreutils)" in errors[0]
    )
    assert "Traceback" not in refused.stderr and "starting" not in refused.stderr
    assert not (workdir / "runs").exists()

    old = tmp_path / "qdrant"
    old.write_text("#!/bin/sh\necho 'qdrant 1.9.7'\n")
    old.chmod(0o755)
    cases = {
        old: f"qdrant: {old} (OMNILAB_QDRANT_BINARY) is Qdrant 1.9.7, which omnilab does "
        "not support (Qdrant 1.10 to 1.x",
        tmp_path / "none": "(OMNILAB_QDRANT_BINARY) is not a file",
    }
    for given, words in cases.items():
        monkeypatch.setenv("OMNILAB_QDRANT_BINARY", str(given))
        with pytest.raises(ServiceUnavailable) as info:
            Stack(Qdrant(), runtime="local", reporter=Lines()).start()
        assert words in str(info.value)
    assert not stack_processes()


def test_a_qdrant_that_never_becomes_ready_fails_with_its_log_and_leaves_nothing(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real server, listening where omnilab does not look (as when another
    configuration wins): the run fails at the readiness deadline with Qdrant's own last
    log lines, and the stack is removed."""
    real = qdrant_server()
    elsewhere = tmp_path / "qdrant"
    elsewhere.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && exec {real} --version\n'
        f"QDRANT__SERVICE__HTTP_PORT={free_port()} QDRANT__SERVICE__GRPC_PORT={free_port()} "
        f'exec {real} "$@"\n'
    )
    elsewhere.chmod(0o755)
    monkeypatch.setenv("OMNILAB_QDRANT_BINARY", str(elsewhere))
    monkeypatch.setenv("OMNILAB_READY_TIMEOUT", "3")
    with pytest.raises(StackStartError) as info:
        Stack(Qdrant(), runtime="local", reporter=Lines()).start()
    message = str(info.value)
    assert message.startswith("qdrant did not become ready within 3s")
    assert "last log lines" in message and "Qdrant HTTP listening on" in message
    assert not list((workdir / "state").glob("stacks/*.json"))
    assert not stack_processes()
