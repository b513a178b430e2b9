"""What the tests share that is not a fixture: paths, the ``omnilab`` command, waiting.

The fixtures are in ``tests/conftest.py`` and in the plug-ins it names
(``queue_helpers``, ``docker_support``, ``promotion_support``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def paused_at(
    step: str, *args: str, cwd: Path | None = None
) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """``omnilab ARGS`` held at the pause point ``step`` (``OMNILAB_PROMOTE_PAUSE_AT``: a
    promotion or a fork stopped at a known moment, to be interrupted or killed there):
    yields the process, once it says it is paused, and its stderr lines so far. It is
    killed on the way out if still running, and after three minutes if it never pauses."""
    proc = subprocess.Popen(
        [str(OMNILAB), *args],
        cwd=cwd,
        env={**os.environ, "OMNILAB_PROMOTE_PAUSE_AT": step},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    timer = threading.Timer(180, proc.kill)  # a step never reached fails, never hangs
    timer.start()
    said: list[str] = []
    try:
        for line in proc.stderr:
            said.append(line)
            if line.startswith(f"promotion paused at {step} "):
                break
        assert proc.poll() is None, f"never paused at {step}:\n{''.join(said)}"
        yield proc, said
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
