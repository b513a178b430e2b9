"""Shared fixtures: every test talks to real servers and leaves nothing behind.

- A session-wide PostgreSQL (started by omnilab's own local runtime) holds the tracking
  store, so CLI runs do not each initialise an embedded one; tests of the embedded
  default unset it.
- Each test runs in its own working directory and stack-state directory, and fails if
  any process of a stack it started is still alive at its end.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, STANDIN, free_port, run_cli, stack_processes, wait_until

#: Fixtures of the HTTP API and its workers, of the docker tests, of promotion's production,
#: of the S3 artifact store.
pytest_plugins = [
    "tests.support.queue_helpers",
    "tests.support.docker_support",
    "tests.support.promotion_support",
    "tests.support.garage_server",
]

#: Variables of the user's environment that would leak into the tests' configuration.
_SCRUB = (
    "POSTGRES_URL",
    "REDIS_URL",
    "QDRANT_URL",
    "QDRANT_API_KEY",
    "QDRANT_GRPC_PORT",
    "OLLAMA_BASE_URL",
    "OMNILAB_RUNTIME",
    "OMNILAB_HOME",
    "OMNILAB_RUNS_DIR",
    "OMNILAB_DATA_DIR",
    "OMNILAB_TRACKING_URL",
    "OMNILAB_ARTIFACTS_URL",
    "ENVIRONMENT",
    "CUDA_VISIBLE_DEVICES",
    "OMNILAB_HOST",
    "OMNILAB_WORKER_LABELS",
)


# -- the images, built from the session's start (tests/support/prebuild.py) -------------

_prebuild: list[tuple[subprocess.Popen[bytes], Path]] = []


def _start_prebuild(test_ids: list[str]) -> None:
    """Once per session, in the process that runs it (xdist's controller, or the only
    one): start building the images its tests need, unless OMNILAB_TESTS_PREBUILD=0."""
    from tests.support.prebuild import needed

    names = needed(test_ids)
    if _prebuild or not names or os.environ.get("OMNILAB_TESTS_PREBUILD") == "0":
        return
    log = Path(tempfile.gettempdir()) / f"omnilab-tests-prebuild-{os.getpid()}.log"
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.prebuild", *names],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _prebuild.append((proc, log))


def pytest_collection_finish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # one process: it collected them all
        _start_prebuild([item.nodeid for item in session.items])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """xdist's controller collects nothing itself: each process tells it what it found."""
    _start_prebuild(ids)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for proc, log in _prebuild:
        if proc.poll() is None:  # the session ended first (-x, a few tests chosen)
            os.killpg(proc.pid, signal.SIGTERM)
        if proc.wait(timeout=30) not in (0, -signal.SIGTERM):
            # The tests that needed an image built it themselves and said why it failed.
            print(f"\nthe images' build from the session's start failed: {log}", file=sys.stderr)


@pytest.fixture(scope="session")
def session_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A PostgreSQL for the tracking store of the whole session."""
    from omnilab.config import get_settings
    from omnilab.progress import QuietReporter
    from omnilab.services.postgres import Postgres
    from omnilab.stack import Stack

    os.environ["OMNILAB_STATE_DIR"] = str(tmp_path_factory.mktemp("session-state"))
    for var in _SCRUB:
        os.environ.pop(var, None)
    stack = Stack(
        Postgres(database="tracking"),
        runtime="local",
        reporter=QuietReporter(),
        settings=get_settings(),
    )
    stack.start()  # no skip: if PostgreSQL cannot start, every test must fail
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def tracking_url(session_stack) -> str:
    running = session_stack.services["postgres"]
    return running.service.url(running.endpoint, secrets=True)


@pytest.fixture(scope="session")
def tests_tmp() -> Iterator[Path]:
    """Folders of the tests' stacks, outside pytest's own temporary folder.

    pytest resets its folder to mode 0700 whenever a session starts, which would cut the
    unprivileged PostgreSQL user (omnilab runs as root here) off from its data in the
    middle of a test of another session running on the same machine.
    """
    base = Path(tempfile.mkdtemp(prefix="omnilab-tests-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def workdir(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tests_tmp: Path,
    tracking_url: str,
    session_stack,
) -> Iterator[Path]:
    """The test's working directory; its TMPDIR, where its stacks live, is beside it."""
    for var in _SCRUB:
        monkeypatch.delenv(var, raising=False)
    name = re.sub(r"[^\w.-]", "_", request.node.name)[:40]
    base = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tests_tmp))
    work, tmp = base / "work", base / "tmp"
    work.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR in this process too
    monkeypatch.setenv("OMNILAB_STATE_DIR", str(work / "state"))
    monkeypatch.setenv("OMNILAB_TRACKING_URL", tracking_url)
    monkeypatch.setenv("OMNILAB_READY_TIMEOUT", "60")
    # Where images are built, `auto` would pick docker: tests say which runtime they
    # test, and the others run locally whatever this machine's engine holds.
    monkeypatch.setenv("OMNILAB_RUNTIME", "local")
    yield work
    # Nothing a test started may outlive it (kept stacks are the test's to remove).
    leftovers = []
    if not wait_until(lambda: not stack_processes(tmp), timeout=15):
        leftovers = stack_processes(tmp)
    assert not leftovers, f"stack processes left behind: {leftovers}"
    # ...nor any stack directory (the embedded store's socket folder goes when it stops).
    dirs: list[str] = []

    def no_stack_dirs() -> bool:
        dirs[:] = [p.name for p in tmp.glob("omnilab-*")]
        return not dirs

    assert wait_until(no_stack_dirs, timeout=10), f"stack directories left behind: {dirs}"


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def standin_ollama(tmp_path: Path) -> Iterator[str]:
    """The Ollama stand-in server on a free port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), "serve"],
        env={**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    assert wait_until(up, timeout=10), "the Ollama stand-in did not start"
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def listener() -> Iterator[int]:
    """A real TCP server on 127.0.0.1 (where a run's own services listen); its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()
