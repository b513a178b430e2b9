"""The local sandbox: the best isolation this host grants without Docker.

Layers, each used when the host permits it and always stated in :meth:`isolation`:

- network: a new network namespace (``unshare --net``; as a non-root user through a
  user namespace) holds only a loopback interface that is down, so nothing, not even
  the run's own services on 127.0.0.1, can be reached;
- processes: a new PID namespace whose first process is the test runner: when it ends,
  or is killed at the time limit, the kernel ends everything the code started;
- user: when omnilab is root, the code runs as an unprivileged user (``nobody``) if that
  user can run the interpreter;
- limits (``prlimit``): address space, CPU seconds, file size, process count, no core
  files; a wall-clock timeout on top;
- files: a scratch folder, removed afterwards, as working directory and home. The rest
  of the file system stays readable as file permissions allow: this is not a container.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from functools import cache
from pathlib import Path
from typing import Any, cast

from omnilab.errors import UsageError
from omnilab.workloads.sandbox.base import Limits, Sandbox

#: Output kept from a sandboxed run (its end, where the runner's report is).
OUTPUT_CAP = 1 << 20
#: Seconds the interpreter gets to start, on top of the tests' wall-clock limit.
STARTUP_GRACE = 5.0
_NS_FLAGS = ["--net", "--pid", "--fork", "--kill-child"]


def _quiet_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, **kwargs)


@cache
def namespace_prefix() -> tuple[list[str] | None, str]:
    """The ``unshare`` command line that isolates network and processes, or why none."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "no `unshare` command (util-linux) on PATH"
    flags = _NS_FLAGS if os.geteuid() == 0 else ["--user", "--map-root-user", *_NS_FLAGS]
    try:
        probe = _quiet_run([unshare, *flags, "true"])
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"unshare failed: {exc}"
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        return None, f"unshare is not permitted here ({reason})"
    return [unshare, *flags], ""


@cache
def _user_can_run(python: str, uid: int, gid: int, tmp: str) -> str | None:
    """None when ``uid`` can run ``python`` on a file in a scratch folder, else why not.

    Tried for real, the way the sandbox will do it: the interpreter or the temporary
    folder may sit below a folder that user cannot enter (a project under ``/root``).
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return "no `unshare` command to change user with"
    scratch = Path(tempfile.mkdtemp(prefix="omnilab-sandbox-probe-", dir=tmp))
    try:
        (scratch / "probe.py").write_text("pass\n")
        (scratch / "probe.py").chmod(0o644)
        os.chown(scratch, uid, gid)
        probe = _quiet_run(
            [unshare, "--setuid", str(uid), "--setgid", str(gid), python, "-I", "probe.py"],
            cwd=scratch,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if probe.returncode != 0:
        detail = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return f"it cannot run {python} in {tmp} ({detail})"
    return None


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


class LocalSandbox(Sandbox):
    kind = "local"

    def __init__(
        self,
        *,
        python: str | None = None,
        user: str | None = "nobody",
        strict: bool = False,
    ) -> None:
        """``python``: the interpreter the code runs under (omnilab's by default, so the
        code sees the same packages). ``user``: who runs it when omnilab is root (None:
        omnilab's own user). ``strict``: refuse, instead of running without a network
        namespace, where the host cannot cut the network."""
        self.python = python or sys.executable
        self.prefix, self.network_reason = namespace_prefix()
        if strict and self.prefix is None:
            raise UsageError(f"sandbox: cannot cut the network here: {self.network_reason}")
        self.uid_gid: tuple[int, int] | None = None
        self.user_note = ""
        me = pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0 and user:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                self.user_note = f"{me} (user {user!r} does not exist)"
            else:
                why = _user_can_run(self.python, entry.pw_uid, entry.pw_gid, tempfile.gettempdir())
                if why is None:
                    self.uid_gid = (entry.pw_uid, entry.pw_gid)
                    self.user_note = f"{user} (uid {entry.pw_uid})"
                else:
                    self.user_note = f"{me}, as omnilab (user {user!r}: {why})"
        else:
            self.user_note = f"{me}, as omnilab"
        self.prlimit = shutil.which("prlimit")

    # -- what applies -------------------------------------------------------------------

    def isolation(self) -> dict[str, Any]:
        network = (
            "none: own network namespace, loopback down (unshare --net)"
            if self.prefix
            else f"NOT isolated: {self.network_reason}"
        )
        processes = (
            "own PID namespace: all end with the runner"
            if self.prefix
            else "own process group, killed at the end"
        )
        root_unlimited = os.geteuid() == 0 and self.uid_gid is None
        return {
            "kind": self.kind,
            "network": network,
            "processes": processes,
            "user": self.user_note,
            "rlimits": "address space, CPU time, file size, core=0"
            + (" (process count not enforced for root)" if root_unlimited else ", process count"),
            "filesystem": "scratch folder as working directory and home; the host's files "
            "stay readable where permissions allow",
            "python": self.python,
        }

    # -- running ------------------------------------------------------------------------

    def prepare_scratch(self, scratch: Path) -> None:
        super().prepare_scratch(scratch)
        if self.uid_gid is not None:
            os.chown(scratch, *self.uid_gid)  # the code may write its own files there

    def _limits_argv(self, limits: Limits) -> list[str]:
        uid = self.uid_gid[0] if self.uid_gid else os.geteuid()
        nproc = _processes_of(uid) + limits.processes
        values = {
            "--as": limits.memory_mb * 1024 * 1024,
            "--cpu": limits.cpu_s,
            "--fsize": limits.file_mb * 1024 * 1024,
            "--nproc": nproc,
            "--core": 0,
        }
        if self.prlimit is None:
            return []
        return [self.prlimit, *(f"{flag}={value}" for flag, value in values.items()), "--"]

    def _preexec(self, limits: Limits):  # type: ignore[no-untyped-def]
        """setrlimit in the child, only where ``prlimit`` is missing."""
        if self.prlimit is not None:
            return None
        import resource

        def apply() -> None:
            mib = 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mib,) * 2)
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s,) * 2)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mib,) * 2)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return apply

    def _execute(
        self, scratch: Path, argv_tail: list[str], limits: Limits
    ) -> tuple[str, int | None, bool]:
        argv = [self.python, "-I", "-B", *argv_tail]
        if self.prefix is not None:
            user = []
            if self.uid_gid is not None:
                user = ["--setuid", str(self.uid_gid[0]), "--setgid", str(self.uid_gid[1])]
            argv = [*self.prefix, *user, *argv]
        argv = [*self._limits_argv(limits), *argv]
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        proc = subprocess.Popen(
            argv,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._preexec(limits),
        )
        tail: collections.deque[bytes] = collections.deque()
        size = [0]

        # A BufferedReader (Popen's default buffering; typeshed says IO[bytes]): read1
        # returns whatever has arrived.
        stdout = cast(io.BufferedReader, proc.stdout)

        def drain() -> None:
            for chunk in iter(lambda: stdout.read1(65536), b""):
                tail.append(chunk)
                size[0] += len(chunk)
                while size[0] - len(tail[0]) >= OUTPUT_CAP:
                    size[0] -= len(tail.popleft())

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        timed_out = False
        try:
            code: int | None = proc.wait(timeout=limits.wall_s + STARTUP_GRACE)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = None
        finally:
            # The namespace's runner dies with its parent (--kill-child) and takes every
            # process of the namespace along; the group kill covers the no-namespace case.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if code is None:
                proc.wait()
            reader.join(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        return b"".join(tail).decode("utf-8", "replace"), code, timed_out
