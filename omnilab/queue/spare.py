"""A run process started before its run: the slot's next work horse, kept ready.

rq forks a work horse when a message arrives, and everything a run needs before its
first line (a tracking-store connection, the environment record) then starts from
nothing. A spare is that horse forked ahead of time: it prepares what does not depend on
the run, then waits on a pipe. When a message arrives the slot writes the message's ids
into the pipe instead of forking; from then on the spare is the horse, and rq's own
monitoring (waiting for it, heartbeats, the stop-job command, a crash) sees no difference:
it is the slot's child, in a process group of its own, exactly as a forked horse is.

A spare never outlives its slot: the kernel kills it with the slot (parent-death signal),
and a slot that stops kills it first. A spare that is gone when its run arrives is
replaced by an ordinary fork, so a message is never lost to one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from omnilab.queue.lifeline import die_with_parent

#: A handoff is a few ids: far below PIPE_BUF, so one write delivers it whole.
_MAX_MESSAGE = 4096


@dataclass
class Handoff:
    """What the slot tells its spare: which message it now runs."""

    job: str
    queue: str
    execution: str

    def encode(self) -> bytes:
        return json.dumps(
            {"job": self.job, "queue": self.queue, "execution": self.execution}
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Handoff:
        value = json.loads(data)
        return cls(str(value["job"]), str(value["queue"]), str(value["execution"]))


@dataclass
class Spare:
    """The slot's side of a spare: its pid and the pipe to hand it a message."""

    pid: int
    _pipe: int

    def alive(self) -> bool:
        """Not exited yet (an exited one is reaped here)."""
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def hand(self, handoff: Handoff) -> bool:
        """Give the spare its run; False if it is gone (then it has been reaped)."""
        try:
            if not self.alive():
                return False
            os.write(self._pipe, handoff.encode())
            return True
        except OSError:  # EPIPE: it died meanwhile
            self.discard()
            return False
        finally:
            with contextlib.suppress(OSError):
                os.close(self._pipe)

    def discard(self) -> None:
        """Kill and reap an unused spare."""
        with contextlib.suppress(OSError):
            os.close(self._pipe)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def start(prepare: Callable[[], None], run: Callable[[Handoff], None]) -> Spare:
    """Fork a spare: it calls ``prepare()``, waits for its handoff, then ``run(handoff)``
    (which does not return: the horse ends with ``os._exit``).

    Call from the slot's main thread: the parent-death signal follows the thread that
    forked, and the slot's other threads (rq's command listener) come and go.
    """
    parent = os.getpid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(read_end)
        return Spare(pid, write_end)
    # The spare. Whatever goes wrong here ends this process only, never returns into
    # the slot's code (that would be a second slot on the same rq worker).
    code = 1
    try:
        os.close(write_end)
        os.setpgrp()  # as rq's horse: the stop-job command signals this group alone
        # Idle, a spare has nothing to clean up: it dies with the slot, and a stray
        # SIGTERM or Ctrl-C ends it without running the slot's handlers.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        die_with_parent(signal.SIGKILL, parent)
        prepare()
        data = _read_all(read_end)
        os.close(read_end)
        if not data:  # the slot let it go without a run
            code = 0
        else:
            run(Handoff.decode(data))
    except BaseException as exc:  # reported; this process ends here
        with contextlib.suppress(Exception):
            print(f"omnilab spare {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, _MAX_MESSAGE)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
