"""Sending queue messages from a process of its own, for the API server.

Building an rq message costs more CPU than recording the run it announces: in the API
process it took about a third of each ``POST /v1/runs`` (measured with
``bench/api_submit.py --sender-off``). The server hands the run ids to this child
process instead, a line each over a pipe, and the child builds and sends the messages in
batches, beside the server on another core.

Nothing is lost if the child dies: the record, not the message, is the promise. The
server starts another child and tells the reconciler, which re-sends every queued run
whose message is not waiting in Redis. The server learns of a death from the child's
stdout closing, so a child that dies holding messages it had not read is replaced at once,
not when the next run arrives. The child dies with the server (parent-death signal) and
when its pipe closes.

Protocol: the first line on the child's stdin is JSON ``{"url": ..., "queue": ...}`` (so
the Redis password is never on a command line); each further line is
``run_id<TAB>queue``. The child writes ``failed`` or ``ok`` on stdout when sending starts
failing or works again.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import cast

from omnilab.queue.sender import take_batch

log = logging.getLogger("omnilab.queue")

#: Messages per batch at most, in the server and in the child.
BATCH = 500


class SenderProcess:
    """``put(run_id, queue)`` returns at once; a child process sends the message."""

    def __init__(self, url: str, queue_name: str, on_failure: Callable[[], None] | None = None):
        self._config = json.dumps({"url": url, "queue": queue_name}).encode() + b"\n"
        self.on_failure = on_failure
        self._pending: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        # Held while the child is replaced: the handing thread (a write that failed) and
        # a listening thread (its stdout closed) may both notice one death.
        self._lock = threading.Lock()
        self._closing = False
        self._child: subprocess.Popen[bytes] | None = None
        with self._lock:
            self._start_child()
        self._thread = threading.Thread(target=self._loop, name="omnilab-sender", daemon=True)
        self._thread.start()

    def put(self, run_id: str, queue_name: str) -> None:
        self._pending.put((run_id, queue_name))

    def close(self, timeout: float = 10) -> None:
        """Hand over what is pending, then let the child send it and stop."""
        self._closing = True
        self._pending.put(None)
        self._thread.join(timeout)
        child = self._child
        if child is None:
            return
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    # -- the server's side ---------------------------------------------------------------

    def _start_child(self) -> None:
        """Start a child and hand it its configuration (call with the lock held)."""
        child = subprocess.Popen(
            [sys.executable, "-m", "omnilab.queue.sender_process", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert child.stdin is not None
        child.stdin.write(self._config)
        child.stdin.flush()
        self._child = child
        threading.Thread(
            target=self._listen, args=(child,), name="omnilab-sender-news", daemon=True
        ).start()

    def _listen(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == b"failed" and self.on_failure is not None:
                self.on_failure()
        # Its stdout closed: the child has ended. Messages written into its pipe that it
        # had not read yet went with it, and a write alone would not say so until the
        # next run arrives, so the death is acted on here.
        if not self._closing:
            self._replace(child, "its output closed")

    def _replace(self, child: subprocess.Popen[bytes] | None, why: object) -> None:
        """Tell the reconciler (it re-sends what a dead child took with it) and start
        another child, unless another thread already replaced this one."""
        with self._lock:
            if child is not self._child or self._closing:
                return
            log.warning("the message sender process ended (%s); starting another", why)
            if child is not None:
                child.kill()
                child.wait()
            if self.on_failure is not None:
                self.on_failure()
            self._start_child()

    def _loop(self) -> None:
        while True:
            batch, stop = take_batch(self._pending, BATCH)
            if batch:
                self._hand(b"".join(f"{r}\t{q}\n".encode() for r, q in batch))
            if stop:
                if self._child is not None and self._child.stdin is not None:
                    self._child.stdin.close()
                return

    def _hand(self, data: bytes) -> None:
        for _ in range(2):
            child = self._child
            try:
                assert child is not None and child.stdin is not None
                child.stdin.write(data)
                child.stdin.flush()
                return
            except (OSError, ValueError) as exc:  # the child died (EPIPE) or its pipe closed
                self._replace(child, exc)


# -- the child -------------------------------------------------------------------------


def _child(parent: int) -> int:
    from omnilab.queue.broker import Broker, QueueUnavailable
    from omnilab.queue.lifeline import die_with_parent

    die_with_parent(signal.SIGTERM, parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which closes us
    logging.basicConfig(level=logging.WARNING, format="omnilab sender: %(message)s")
    # A BufferedReader (typeshed says BinaryIO, which has no read1).
    stdin = cast(io.BufferedReader, sys.stdin.buffer)
    config = json.loads(stdin.readline())
    broker = Broker(config["url"], config["queue"])
    failing = False

    def tell(news: bytes) -> None:
        sys.stdout.buffer.write(news + b"\n")
        sys.stdout.buffer.flush()

    rest = b""
    while True:
        chunk = stdin.read1(1 << 16)  # whatever has arrived, up to 64 KiB: a batch
        if not chunk:
            return 0
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        batch = []
        for line in lines:
            run_id, _, queue_name = line.decode().partition("\t")
            batch.append((run_id, queue_name, 0))
        for start in range(0, len(batch), BATCH):
            try:
                broker.send_many(batch[start : start + BATCH])
            except QueueUnavailable as exc:
                if not failing:
                    log.warning("%s; recorded runs are sent when it is back", exc)
                    tell(b"failed")
                failing = True
                continue
            except Exception:  # never let the child die: the reconciler covers these runs
                log.exception("sending %d message(s) failed", len(batch))
                tell(b"failed")
                continue
            if failing:
                log.warning("Redis answers again")
                tell(b"ok")
            failing = False


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1])))
