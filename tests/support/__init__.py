"""What the tests share that is not a fixture: paths, the ``omnilab`` command, waiting.

The fixtures are in ``tests/conftest.py`` and in the plug-ins it names
(``queue_helpers``, ``docker_support``, ``promotion_support``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
#: The experiments the tests run (one per way a run can go).
EXPERIMENTS = SUPPORT / "experiments"
#: The experiments folder of the tests' API servers.
API_EXPERIMENTS = SUPPORT / "api_experiments"
#: The experiments of the placement tests (requirements; one with a bad `requires`).
PLACEMENT_EXPERIMENTS = SUPPORT / "placement_experiments"
#: The stand-in's answers to the code-generation examples.
CODEGEN_FIXTURES = SUPPORT / "fixtures" / "codegen.json"
HELLO = ROOT / "experiments" / "hello.py"
OMNILAB = Path(sys.executable).parent / "omnilab"
#: The Ollama stand-in: a script (``python STANDIN serve``) and its image's recipe.
STANDIN_DIR = SUPPORT / "ollama_standin"
STANDIN = STANDIN_DIR / "ollama_standin.py"
#: A folder to put first on PATH: its ``ollama`` runs the stand-in.
STANDIN_BIN = SUPPORT / "standin_bin"


def qdrant_server() -> Path:
    """The Qdrant server binary the tests run (``qdrant`` on PATH, or
    ``OMNILAB_QDRANT_BINARY``; CI puts ``../shared/bin`` on PATH): they fail, never skip,
    without one."""
    from omnilab.services.qdrant import binary

    found = binary.find()
    assert found is not None, (
        "these tests need a Qdrant server binary: `qdrant` on PATH or OMNILAB_QDRANT_BINARY "
        "(CI puts ../shared/bin on PATH)"
    )
    return found.path


def stack_processes(under: Path | None = None) -> list[tuple[int, str]]:
    """(pid, working directory) of live processes working inside ``under`` (TMPDIR).

    Each test gets its own TMPDIR, where its stacks' directories are made; every server
    of a stack works inside its stack's directory. So a process whose working directory
    is in the test's folder is one of its stacks' servers (or their watcher).
    """
    root = str(Path(under or tempfile.gettempdir()).resolve())
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(os.path.join(entry.path, "cwd"))
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root + "/")):
            found.append((int(entry.name), cwd))
    return found


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``omnilab`` command, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(OMNILAB), *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
