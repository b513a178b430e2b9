"""What every sandbox provides: run a folder's tests under limits, report what happened.

A sandbox runs generated code that nobody has read. Whatever it does (loop forever,
allocate without end, fork, open sockets, print megabytes), the run must go on, the host
must not be reached over the network, and the report must say which protections
applied, since they differ between hosts.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from omnilab.errors import UsageError

RUNNER = Path(__file__).resolve().parent / "testrunner.py"
#: The runner's file name inside the sandbox (underscored: no task can shadow it).
RUNNER_NAME = "_omnilab_testrunner.py"

Status = Literal["passed", "failed", "error", "timeout", "crashed", "no-tests"]


@dataclass(frozen=True)
class Limits:
    """What one sandboxed test run may use."""

    #: Wall-clock seconds for the whole run (imports and every test).
    wall_s: float = 10.0
    #: CPU seconds.
    cpu_s: int = 10
    #: Memory: address space locally (RLIMIT_AS), the cgroup limit in a container.
    memory_mb: int = 1024
    #: Processes (and threads) the code may add.
    processes: int = 64
    #: Largest file it may write.
    file_mb: int = 64

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise UsageError(f"sandbox limit {name} must be positive, not {value}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SandboxResult:
    status: Status
    tests: list[dict[str, Any]] = field(default_factory=list)
    #: Test modules that could not even be imported, with why.
    errors: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0
    exit_code: int | None = None
    #: The end of what the sandbox printed outside the runner's report (tracebacks...).
    output: str = ""

    @property
    def passed(self) -> int:
        return sum(1 for t in self.tests if t["passed"])

    @property
    def failed(self) -> int:
        return len(self.tests) - self.passed

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "failed": self.failed}


def parse_report(
    marker: str, stdout: str, exit_code: int | None, duration: float, timed_out: bool
) -> SandboxResult:
    """Turn the runner's lines into a result; anything unexpected is said, not hidden."""
    tests: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    done = False
    other: list[str] = []
    for line in stdout.splitlines():
        if not line.startswith(marker + " "):
            other.append(line)
            continue
        item = json.loads(line[len(marker) + 1 :])
        tests.extend([item["test"]] if "test" in item else [])
        errors.extend([item["error"]] if "error" in item else [])
        done = done or "done" in item
    tail = "\n".join(other)[-2000:]
    if timed_out or exit_code == 124:
        return SandboxResult("timeout", tests, errors, duration, exit_code, tail)
    if not done:
        if exit_code in (137, -9):
            tail = (tail + "\n" if tail else "") + "killed (SIGKILL): over the memory limit?"
        return SandboxResult("crashed", tests, errors, duration, exit_code, tail)
    if errors:
        status: Status = "error"
    elif not tests:
        status = "no-tests"
    else:
        status = "passed" if all(t["passed"] for t in tests) else "failed"
    return SandboxResult(status, tests, errors, duration, exit_code, tail)


class Sandbox(ABC):
    """Runs the tests of a folder of files in isolation."""

    kind: str

    @abstractmethod
    def isolation(self) -> dict[str, Any]:
        """Which protections apply here, in words a run record can keep."""

    @abstractmethod
    def _execute(
        self, scratch: Path, argv_tail: list[str], limits: Limits
    ) -> tuple[str, int | None, bool]:
        """Run the runner in ``scratch``: (stdout, exit code, timed out)."""

    def run_tests(
        self, files: Mapping[str, str], test_modules: Sequence[str], limits: Limits
    ) -> SandboxResult:
        """Copy ``files`` (name -> source) into a fresh scratch folder and run the tests."""
        import time

        scratch = Path(tempfile.mkdtemp(prefix="omnilab-sandbox-"))
        try:
            for name, source in files.items():
                (scratch / name).write_text(source, encoding="utf-8")
            shutil.copyfile(RUNNER, scratch / RUNNER_NAME)
            self.prepare_scratch(scratch)
            marker = "OMNILAB-RESULT-" + secrets.token_hex(8)
            argv_tail = [
                RUNNER_NAME,
                marker,
                str(limits.wall_s),
                str(limits.memory_mb),
                *test_modules,
            ]
            began = time.monotonic()
            stdout, code, timed_out = self._execute(scratch, argv_tail, limits)
            return parse_report(marker, stdout, code, time.monotonic() - began, timed_out)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def prepare_scratch(self, scratch: Path) -> None:
        """Make the folder usable by whoever runs the code (another user, a container)."""
        scratch.chmod(0o755)
        for path in scratch.iterdir():
            path.chmod(0o644)
