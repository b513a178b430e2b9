"""Processes that must not outlive their parent.

A worker is a tree: the ``omnilab worker`` process, one slot process per concurrent run,
one work horse per run. If the top is SIGKILLed, the kernel's parent-death signal carries
the news down at once: slots are killed, and each horse gets SIGTERM, which the runner
turns into a normal teardown of the run's stack. (Each stack's watcher process still
removes the stack if its horse dies outright.)
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

_PR_SET_PDEATHSIG = 1


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int, parent_pid: int | None = None) -> None:
    """Ask the kernel for ``sig`` when our parent dies; if it already has, act now."""
    libc = _libc()
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died between our fork and the prctl: then we were re-parented.
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
