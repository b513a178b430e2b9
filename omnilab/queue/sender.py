"""Where a recorded run's message goes, and the batching its sender uses.

The API answers 202 as soon as a run is recorded; its message follows at once, together
with whatever else arrived meanwhile (one Redis round trip per batch, about half the CPU
per message of sending each on its own). If the sender dies first, or Redis is down, the
reconciler sends it later: the record, not the message, is the promise.
"""

from __future__ import annotations

import queue
from typing import Protocol, TypeVar

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
    """Where a recorded run's message goes: the API server's
    :class:`omnilab.queue.sender_process.SenderProcess`."""

    def put(self, run_id: str, queue_name: str) -> None: ...

    def close(self, timeout: float = 10) -> None: ...
