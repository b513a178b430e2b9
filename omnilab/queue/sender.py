"""Sending queue messages from a background thread, in batches.

The API answers 202 as soon as a run is recorded; its message follows at once from this
thread, together with whatever else arrived meanwhile (one Redis round trip, and about
half the CPU per message of sending each on its own). If the process dies first, or
Redis is down, the reconciler sends it later: the record, not the message, is the promise.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from omnilab.queue.broker import Broker, QueueUnavailable

log = logging.getLogger("omnilab.queue")

BATCH = 500

T = TypeVar("T")


def take_batch(pending: queue.SimpleQueue[T | None], limit: int) -> tuple[list[T], bool]:
    """Wait for an item, then take what else is pending, up to ``limit``; and whether the
    stop mark (None) came."""
    item = pending.get()
    if item is None:
        return [], True
    batch = [item]
    while len(batch) < limit:
        try:
            more = pending.get_nowait()
        except queue.Empty:
            break
        if more is None:
            return batch, True
        batch.append(more)
    return batch, False


class Outbox(Protocol):
    """Where a recorded run's message goes: :class:`Sender` (a thread) or
    :class:`omnilab.queue.sender_process.SenderProcess` (a process, for the API server)."""

    def put(self, run_id: str, queue_name: str) -> None: ...

    def close(self, timeout: float = 10) -> None: ...


class Sender:
    def __init__(self, broker: Broker, on_failure: Callable[[], None] | None = None) -> None:
        self.broker = broker
        self.on_failure = on_failure
        self._pending: queue.SimpleQueue[tuple[str, str, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="omnilab-sender", daemon=True)
        self._thread.start()
        self._failing = False

    def put(self, run_id: str, queue_name: str) -> None:
        self._pending.put((run_id, queue_name, 0))

    def close(self, timeout: float = 10) -> None:
        """Send what is pending, then stop."""
        self._pending.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            batch, stop = take_batch(self._pending, BATCH)
            if batch:
                self._send(batch)
            if stop:
                return

    def _send(self, batch: list[tuple[str, str, int]]) -> None:
        try:
            self.broker.send_many(batch)
        except QueueUnavailable as exc:
            if self.on_failure is not None:
                self.on_failure()
            if not self._failing:
                log.warning("%s; %d run(s) recorded, sent when it is back", exc, len(batch))
            self._failing = True
            return
        except Exception:  # never let the thread die; the reconciler covers the runs
            if self.on_failure is not None:
                self.on_failure()
            log.exception("sending %d message(s) failed; the reconciler will send them", len(batch))
            return
        if self._failing:
            log.warning("Redis answers again")
        self._failing = False
