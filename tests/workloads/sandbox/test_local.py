"""The local sandbox runs untrusted code for real: limits, no network, nothing left over.

Every check here runs real processes under the host's real isolation (namespaces via
`unshare`, rlimits via `prlimit`); the conftest fails a test that leaves any process
working inside its temporary folder, where the sandboxes' scratch folders are made.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnilab import UsageError
from omnilab.workloads.sandbox import Limits, LocalSandbox, sandbox_for
from omnilab.workloads.sandbox import local as local_sandbox

SOLUTION = "def add(a, b):\n    return a + b\n"


def run(box: LocalSandbox, tests: str, limits: Limits | None = None, solution: str = SOLUTION):
    return box.run_tests(
        {"solution.py": solution, "test_solution.py": tests},
        ["test_solution"],
        limits or Limits(wall_s=10),
    )


def test_passing_and_failing_tests_are_told_apart() -> None:
    result = run(
        LocalSandbox(),
        "from solution import add\n"
        "def test_ok():\n    assert add(2, 3) == 5\n"
        "def test_wrong():\n    assert add(2, 2) == 5, 'two and two'\n"
        "def test_prints():\n    print('hello')\n    raise ValueError('bad')\n",
    )
    assert result.status == "failed"
    assert (result.passed, result.failed) == (1, 2)
    by_name = {t["name"]: t for t in result.tests}
    assert by_name["test_solution::test_ok"]["passed"]
    assert (
        (by_name["test_solution::test_wrong"]["error"])
        == "AssertionError: two and two (test_solution.py line 5)"
    )
    assert by_name["test_solution::test_prints"]["output"] == "hello\n"


def test_a_user_who_cannot_reach_the_interpreter_is_not_used_and_that_is_said() -> None:
    box = LocalSandbox()  # this test's TMPDIR is private to its owner
    if os.geteuid() == 0:
        assert "as omnilab (user 'nobody': it cannot run" in box.isolation()["user"]
    result = run(box, "import os\ndef test_uid():\n    assert os.getuid() == os.geteuid()\n")
    assert result.status == "passed"


def test_a_test_module_that_does_not_import_is_an_error() -> None:
    result = run(LocalSandbox(), "from solution import subtract\n")
    assert result.status == "error"
    assert "ImportError" in result.errors[0]["error"]


def test_a_run_killed_midway_keeps_what_had_finished() -> None:
    result = run(
        LocalSandbox(),
        "import os\n"
        "def test_first():\n    pass\n"
        "def test_dies():\n    os._exit(3)\n"
        "def test_never():\n    pass\n",
    )
    assert (result.status, result.exit_code) == ("crashed", 3)
    assert [t["name"] for t in result.tests] == ["test_solution::test_first"]


def test_no_test_functions_is_said() -> None:
    assert run(LocalSandbox(), "X = 1\n").status == "no-tests"


def test_network_is_cut_even_to_localhost(listener: int) -> None:
    box = LocalSandbox()
    assert box.isolation()["network"].startswith("none")
    result = run(
        box,
        "import socket\n"
        "def test_connect():\n"
        f"    socket.create_connection(('127.0.0.1', {listener}), timeout=2).close()\n",
    )
    assert result.status == "failed"
    assert "Network is unreachable" in result.tests[0]["error"]
    # The same code outside the sandbox does reach the server: the cut is the sandbox's.
    socket.create_connection(("127.0.0.1", listener), timeout=2).close()


def test_a_busy_loop_is_stopped_at_the_time_limit() -> None:
    began = time.monotonic()
    spin = "def test_spin():\n    while True:\n        pass\n"
    result = run(LocalSandbox(), spin, Limits(wall_s=1))
    assert result.status == "timeout"
    assert time.monotonic() - began < 8


def test_a_sleeper_is_stopped_at_the_time_limit() -> None:
    result = run(
        LocalSandbox(), "import time\ndef test_sleep():\n    time.sleep(600)\n", Limits(wall_s=1)
    )
    assert result.status == "timeout"


def test_memory_beyond_the_limit_fails_the_test_not_the_host() -> None:
    result = run(
        LocalSandbox(),
        "def test_alloc():\n    block = bytearray(2 * 1024 ** 3)\n    assert block\n",
        Limits(memory_mb=512),
    )
    assert result.status == "failed"
    assert result.tests[0]["error"].startswith("MemoryError")


def test_children_of_the_code_end_with_the_sandbox(tmp_path: Path) -> None:
    """The code starts a long-lived child and returns: the PID namespace ends it."""
    result = run(
        LocalSandbox(),
        "import subprocess, sys\n"
        "def test_fork():\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n",
    )
    assert result.status == "passed"
    # conftest's check fails this test if the sleeper (working in the scratch folder,
    # inside this test's TMPDIR) is still alive.


def test_files_are_limited_in_size() -> None:
    result = run(
        LocalSandbox(),
        "def test_write():\n"
        "    with open('big', 'wb') as fh:\n"
        "        fh.write(b'x' * (3 * 1024 * 1024))\n",
        Limits(file_mb=1),
    )
    assert result.status in ("failed", "crashed")  # EFBIG, or SIGXFSZ ends the runner


def test_environment_carries_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:secret@127.0.0.1:6380/0")
    result = run(
        LocalSandbox(),
        "import os\ndef test_env():\n    assert 'REDIS_URL' not in os.environ, 'leaked'\n",
    )
    assert result.status == "passed"


@pytest.fixture
def open_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TMPDIR every user can enter (pytest's own is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="omnilab-test-open-", dir="/tmp"))
    folder.chmod(0o711)
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_code_runs_as_an_unprivileged_user_when_omnilab_is_root(
    tmp_path: Path, open_tmpdir: Path
) -> None:
    # The Debian interpreter is reachable by `nobody` (a project venv under /root is not).
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python, "this test needs a system python3"
    box = LocalSandbox(python=python)
    root = os.geteuid() == 0
    expected_uid = 65534 if root else os.geteuid()
    if root:
        assert box.isolation()["user"] == "nobody (uid 65534)", box.isolation()["user"]
    private = tmp_path / "private.txt"
    private.write_text("owner only")
    private.chmod(0o600)
    result = run(
        box,
        "import os\n"
        f"def test_uid():\n    assert os.getuid() == {expected_uid}\n"
        f"def test_read():\n    open({str(private)!r}).read()\n",
    )
    by_name = {t["name"]: t for t in result.tests}
    assert by_name["test_solution::test_uid"]["passed"]
    if root:  # the unprivileged user cannot read the owner's private file
        assert "PermissionError" in by_name["test_solution::test_read"]["error"]


def test_without_unshare_it_says_so_and_strict_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    bare = Path(os.environ["TMPDIR"]) / "bin"  # no unshare, no prlimit: setrlimit instead
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    local_sandbox.namespace_prefix.cache_clear()
    try:
        box = LocalSandbox()
        assert box.isolation()["network"].startswith("NOT isolated: no `unshare`")
        assert run(box, "def test_ok():\n    pass\n").status == "passed"
        with pytest.raises(UsageError, match="cannot cut the network"):
            LocalSandbox(strict=True)
    finally:
        local_sandbox.namespace_prefix.cache_clear()


def test_bad_limits_and_choices_are_refused() -> None:
    with pytest.raises(UsageError, match="wall_s must be positive"):
        Limits(wall_s=0)
    with pytest.raises(UsageError, match="sandbox must be one of"):
        sandbox_for("vm", runtime="local", image="x")
