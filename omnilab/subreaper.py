"""The processes an experiment starts end with its run.

An experiment may start processes: a server it tests against, a ``subprocess.Popen`` it
forgets to wait for, a tool that double-forks into a daemon. Nothing else would stop
them: the stack's teardown knows only the stack's servers, and a double-forked process
is re-parented to init, out of sight of whoever started the run.

So while ``run()`` runs, the process that runs it is a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``): an orphan among its descendants is re-parented to it
instead of to init, and every process the experiment started, however it detached
(``setsid``, a double fork), stays in its tree. When ``run()`` returns (or raises, or is
interrupted), :class:`ProcessScope` ends the descendants that were not there when it
began: SIGTERM, :data:`GRACE_S` seconds to finish, then SIGKILL, until none is left, and
reaps them. The run records each one it had to end (``environment.ended_processes``:
pid, name, signal), and says so on its log.

Which process is the scope:

- ``omnilab run``: the CLI's own process;
- a worker: the work horse, one process per run;
- ``isolation = "container"``: ``omnilab.isolation.inside``, the container's PID 1, whose
  orphans come to it anyway (the container's init);
- ``omnilab.run()`` in a notebook: the kernel, for the run's duration only (it stops
  being a subreaper afterwards). Processes started before the run are left alone;
  processes the kernel's other threads start while a run runs are taken for the run's.

A process that leaves the tree through someone else (``docker run``, ``systemd-run``,
``ssh``) is that service's business, not the run's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

#: Seconds a process gets between SIGTERM and SIGKILL.
GRACE_S = 2.0
#: Rounds of SIGKILL for processes that keep starting others while being ended.
_KILL_ROUNDS = 20

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    state: str
    start: int
    name: str


def _processes() -> dict[int, _Proc]:
    """Every process of the machine that can be read, by pid."""
    found: dict[int, _Proc] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (name) state ppid ...": the name may hold spaces and parentheses.
        head, _, rest = text.rpartition(")")
        fields = rest.split()
        found[int(entry.name)] = _Proc(
            pid=int(entry.name),
            ppid=int(fields[1]),
            state=fields[0],
            start=int(fields[19]),
            name=head.partition("(")[2],
        )
    return found


def _descendants(
    root: int, table: dict[int, _Proc], prune: set[tuple[int, int]] | None = None
) -> list[_Proc]:
    """``root``'s descendants; those in ``prune`` are listed but not descended into."""
    children: dict[int, list[_Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[_Proc] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            if prune is None or (child.pid, child.start) not in prune:
                todo.append(child.pid)
    return found


def _prctl(option: int, value: Any) -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0))
    except (OSError, AttributeError):  # not Linux: no subreaper, the tree alone
        return -1


def is_subreaper() -> bool:
    flag = ctypes.c_int(0)
    return _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag)) == 0 and flag.value != 0


def set_subreaper(on: bool) -> bool:
    """Make this process a child subreaper (or stop); whether the kernel agreed."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0) == 0


class ProcessScope:
    """``with ProcessScope() as scope: run()`` (or :meth:`open`, then :meth:`close` where
    a teardown cannot be interrupted); then ``scope.ended`` lists the processes the
    experiment left running, which the scope ended (dicts: pid, name, signal)."""

    def __init__(self, grace_s: float = GRACE_S) -> None:
        self.grace_s = grace_s
        self.ended: list[dict[str, Any]] = []
        self._pid = os.getpid()
        self._before: set[tuple[int, int]] = set()
        self._was_subreaper = False
        self._open = False

    def open(self) -> None:
        """Start the scope: from now on, orphans come to this process."""
        self._was_subreaper = is_subreaper()
        if not self._was_subreaper:
            set_subreaper(True)
        self._before = {(p.pid, p.start) for p in _descendants(self._pid, _processes())}
        self._open = True

    def close(self) -> list[dict[str, Any]]:
        """End what the experiment left running; returns :attr:`ended`. Idempotent."""
        if not self._open:
            return self.ended
        self._open = False
        try:
            return self.end_leftovers()
        finally:
            if not self._was_subreaper:
                set_subreaper(False)

    def __enter__(self) -> ProcessScope:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def leftovers(self) -> list[_Proc]:
        """Descendants started since the scope began, still running (zombies are done).

        What a process that was there before starts meanwhile is that process's own: a
        PostgreSQL server's backend for a new connection (the tracking store's, the
        stack's), Redis's background save. Ending those would take the run's servers
        down under it, and they end with their server anyway.
        """
        return [
            p
            for p in _descendants(self._pid, _processes(), prune=self._before)
            if (p.pid, p.start) not in self._before and p.state != "Z"
        ]

    def end_leftovers(self) -> list[dict[str, Any]]:
        """SIGTERM, the grace period, then SIGKILL until none is left; reap them."""
        first = self.leftovers()
        if not first:
            self._reap()
            return self.ended
        signalled: dict[tuple[int, int], dict[str, Any]] = {}
        for proc in first:
            self._signal(proc, signal.SIGTERM, signalled)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            self._reap()
            if not self.leftovers():
                break
            time.sleep(0.02)
        for _ in range(_KILL_ROUNDS):
            left = self.leftovers()
            if not left:
                break
            for proc in left:
                self._signal(proc, signal.SIGKILL, signalled)
            time.sleep(0.02)
            self._reap()
        self._reap()
        self.ended = list(signalled.values())
        return self.ended

    def _signal(
        self, proc: _Proc, sig: signal.Signals, signalled: dict[tuple[int, int], dict[str, Any]]
    ) -> None:
        try:
            os.kill(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        # The last signal it needed is the one recorded: SIGKILL means it ignored SIGTERM.
        signalled[(proc.pid, proc.start)] = {
            "pid": proc.pid,
            "name": proc.name,
            "signal": sig.name,
        }

    def _reap(self) -> None:
        """Wait for the finished processes that are this one's children now (its own, and
        orphans re-parented to it): nobody else will, and zombies would pile up."""
        for proc in _descendants(self._pid, _processes()):
            if (
                proc.ppid == self._pid
                and proc.state == "Z"
                and ((proc.pid, proc.start) not in self._before)
            ):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, os.WNOHANG)


def describe(ended: list[dict[str, Any]]) -> str:
    """One line for the run's log: what was ended."""
    shown = ", ".join(f"{e['name']} (pid {e['pid']}, {e['signal']})" for e in ended[:8])
    more = f" and {len(ended) - 8} more" if len(ended) > 8 else ""
    return f"ended {len(ended)} process(es) the experiment left running: {shown}{more}"
