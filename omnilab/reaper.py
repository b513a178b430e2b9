"""Removes a stack whose owner died.

Every stack gets a small watcher process (``python -m omnilab.reaper STATE_FILE``) in a
session of its own. It waits for the owning process to exit (a pidfd, so it learns at
once) and, if the owner did not tear the stack down itself (SIGKILL, a crashed kernel,
a closed laptop lid mid-run), tears it down from the state file through the runtime's
own ``destroy``: the same code path as a normal exit. It exits as soon as the state
file disappears (normal teardown) or is marked ``keep``.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from omnilab.runtimes.state import StackState

POLL_MS = 500


def spawn(state_path: Path) -> subprocess.Popen[bytes]:
    """Start the watcher for one stack; it outlives this process by design."""
    return subprocess.Popen(
        [sys.executable, "-m", "omnilab.reaper", str(state_path), os.getcwd()],
        cwd="/",  # hold no directory of the user's busy
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _log(state_path: Path, message: str) -> None:
    try:
        with open(state_path.parent / "reaper.log", "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    except OSError:
        pass


def watch(state_path: Path, cwd: Path | None = None) -> int:
    try:
        state = StackState.load(state_path)
    except (OSError, ValueError):
        return 0
    try:
        pidfd: int | None = os.pidfd_open(state.owner_pid)
    except (ProcessLookupError, OSError):
        pidfd = None
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    while True:
        events = poller.poll(POLL_MS) if pidfd is not None else []
        if not state_path.exists():
            return 0
        try:
            state = StackState.load(state_path)
        except (OSError, ValueError):
            continue  # being rewritten; look again
        if state.keep:
            return 0
        if events or pidfd is None or not state.owner_is_alive():
            break
    return reap(state, cwd)


def reap(state: StackState, cwd: Path | None = None) -> int:
    """Tear down ``state``'s stack with its runtime, and forget it."""
    from omnilab.config import get_settings
    from omnilab.progress import QuietReporter
    from omnilab.runtimes import runtime_class

    assert state.path is not None
    cls = runtime_class(state.runtime)
    if cls is None:
        _log(state.path, f"stack {state.id}: runtime {state.runtime!r} unavailable; left as is")
        return 1
    where = cwd or Path.cwd()
    settings = get_settings(cwd=where)  # its owner's .env.system files and config file
    # A stack whose data waits for promotion stops, and its data stays.
    retain = bool(state.extra.get("retain_data"))
    removed = cls(settings, QuietReporter()).destroy(state, remove_data=not retain)
    state.remove()
    _log(state.path, f"stack {state.id}: owner {state.owner_pid} gone; removed {removed}")
    return 0


if __name__ == "__main__":
    sys.exit(watch(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None))
