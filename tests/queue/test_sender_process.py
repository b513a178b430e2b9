"""The API server's message sender process: messages reach a real Redis through it, a
dead one is replaced (and the reconciler told), the Redis password is never on a command
line, and it never outlives the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from rq import Queue

from omnilab.queue.sender_process import SenderProcess
from tests.support import wait_until
from tests.support.queue_helpers import RedisServer


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


def _senders_of(pid: int) -> list[int]:
    """Live sender processes started by ``pid`` (not zombies: their cmdline is empty)."""
    return [
        c
        for c in _children(pid)
        if b"omnilab.queue.sender_process" in Path(f"/proc/{c}/cmdline").read_bytes()
    ]


def _sender_of(pid: int) -> int:
    [child] = _senders_of(pid)
    return child


def test_messages_reach_redis_and_a_dead_sender_is_replaced(
    redis_server: RedisServer,
) -> None:
    failures = threading.Event()
    sender = SenderProcess(redis_server.url, "omnilab", on_failure=failures.set)
    queue = Queue("omnilab", connection=redis_server.client())
    try:
        first = [uuid.uuid4().hex for _ in range(300)]
        for run_id in first:
            sender.put(run_id, "omnilab")
        assert wait_until(lambda: queue.count == 300, timeout=20)
        assert {j.args[0] for j in queue.get_jobs()} == set(first)
        child = _sender_of(os.getpid())
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        assert redis_server.password.encode() not in cmdline
        assert redis_server.password.encode() not in Path(f"/proc/{child}/environ").read_bytes()

        os.kill(child, signal.SIGKILL)
        # The server hears of the death from the child's stdout closing, before any
        # further write: the reconciler is told (it re-sends what a dying sender may have
        # taken with it), and another sender starts.
        assert wait_until(failures.is_set, timeout=10)
        assert wait_until(lambda: _senders_of(os.getpid()) not in ([], [child]), timeout=10)
        later = [uuid.uuid4().hex for _ in range(50)]
        for run_id in later:
            sender.put(run_id, "omnilab")
        assert wait_until(lambda: queue.count == 350, timeout=20)
        assert {j.args[0] for j in queue.get_jobs()} == {*first, *later}
        assert _sender_of(os.getpid()) != child
    finally:
        sender.close()
    assert not _senders_of(os.getpid())


def test_the_sender_dies_with_its_server(redis_server: RedisServer) -> None:
    """A server SIGKILLed cannot stop its sender: the kernel does."""
    code = (
        "import sys, time\n"
        "from omnilab.queue.sender_process import SenderProcess\n"
        f"s = SenderProcess({redis_server.url!r}, 'omnilab')\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline() == b"up\n"
        child = _sender_of(server.pid)
        server.kill()
        server.wait()

        def gone() -> bool:
            try:
                state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return True
            return state == "Z"

        assert wait_until(gone, timeout=10)
    finally:
        server.kill()
