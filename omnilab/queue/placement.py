"""Placement: the worker host whose queue a run with requirements goes to, or why none.

Queues. A run that requires nothing goes to the shared queue (``{queue}``, default
``omnilab``) as it always did, with no read of the store on its way: queuing stays as
fast as it was. Every worker host also has queues of its own, ``{queue}@{host}``, and
``{queue}-gpu@{host}`` that only its GPU slots listen to; a run with requirements
(:mod:`omnilab.requirements`) goes to the queue of one host whose live workers offer
all of it, the least busy one, or nowhere: it then stays queued with the reason
(``waiting for capacity: no live worker has a GPU (2 workers alive: a, b)``) and no
message, and the reconciler (:mod:`omnilab.queue.reconcile`) places it when a worker
that can take it appears. It also places again a run whose host lost its workers before
one took it.

A host's workers share its queues, so a host is chosen only when *every* live worker
there that listens to the queue (for a GPU run: every worker with GPUs) offers what the
run requires; a run's process checks its own slot once more before it runs anything
(:mod:`omnilab.queue.horse`).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from omnilab.requirements import Requirements, needs, unmet
from omnilab.tracking.workers import Capacity, WorkerRecord

#: What every reason starts with.
WAITING = "waiting for capacity: "


def gpu_queue(queue: str) -> str:
    """The shared GPU queue of ``queue``: what older messages and GPU slots share."""
    return f"{queue}-gpu"


def host_queue(queue: str, host: str) -> str:
    """``host``'s own queue: its workers' slots listen to it besides the shared one."""
    return f"{queue}@{host}"


def worker_queues(queue: str, host: str, *, gpu: bool) -> list[str]:
    """The queues one slot of a worker on ``host`` listens to, first to last: the
    host's own before the shared ones, a GPU slot's GPU queues before the others."""
    plain = [host_queue(queue, host), queue]
    if not gpu:
        return plain
    return [host_queue(gpu_queue(queue), host), gpu_queue(queue), *plain]


@dataclass(frozen=True)
class Placement:
    """Where a run goes: ``queue`` on ``host``; or, with ``waiting``, nowhere yet
    (``queue`` is then the shared queue it belongs to, for display)."""

    queue: str
    host: str | None = None
    waiting: str | None = None


def _listeners(required: Requirements, workers: list[WorkerRecord]) -> list[WorkerRecord]:
    """The workers that take from a host queue of a run with these requirements."""
    return [w for w in workers if w.gpus] if required.gpus else list(workers)


def _by_host(workers: list[WorkerRecord]) -> dict[str, list[WorkerRecord]]:
    hosts: dict[str, list[WorkerRecord]] = defaultdict(list)
    for worker in workers:
        hosts[worker.host].append(worker)
    return hosts


def can_take(required: Requirements, host: str, capacity: Capacity) -> bool:
    """Whether ``host``'s queue is still a place for the run: it has live workers that
    listen to it, and every one of them offers what the run requires."""
    there = [w for w in _listeners(required, capacity.workers) if w.host == host]
    return bool(there) and all(not unmet(required, w.offer) for w in there)


def choose(required: Requirements, capacity: Capacity, queue: str) -> Placement:
    """The least busy host that can take the run (runs running there and placed there
    but not taken yet, per slot), or why there is none."""
    base = gpu_queue(queue) if required.gpus else queue
    hosts = _by_host(_listeners(required, capacity.workers))
    fitting = [h for h, ws in hosts.items() if all(not unmet(required, w.offer) for w in ws)]
    if not fitting:
        return Placement(queue=base, waiting=WAITING + why_none(required, capacity))

    def load(host: str) -> tuple[float, int, str]:
        workers = [w for w in capacity.workers if w.host == host]
        busy = sum(capacity.running.get(w.id, 0) for w in workers)
        busy += capacity.placed.get(host, 0)
        slots = sum(
            min(len(w.gpus), w.concurrency) if required.gpus else w.concurrency for w in hosts[host]
        )
        return busy / max(slots, 1), busy, host

    host = min(fitting, key=load)
    return Placement(queue=host_queue(base, host), host=host)


def why_none(required: Requirements, capacity: Capacity) -> str:
    """Why no live worker host can take the run, in one line, with who is alive."""
    workers = capacity.workers
    if not workers:
        return "no worker is alive (start one with `omnilab worker`)"
    hosts = sorted({w.host for w in workers})
    alive = (
        f"{len(workers)} worker{'s' if len(workers) != 1 else ''} alive: {', '.join(hosts)}"
        if len(hosts) == len(workers)
        else f"{len(workers)} workers alive on {len(hosts)} host{'s' if len(hosts) != 1 else ''}: "
        f"{', '.join(hosts)}"
    )
    said = needs(required)
    gaps = {w.id: unmet(required, w.offer) for w in workers}
    never = [key for key in said if all(key in gap for gap in gaps.values())]
    if never:
        parts = []
        if "host" in never:
            parts.append(f"is on host {required.host}")
        has = [said[key] for key in never if key != "host"]
        if has:
            parts.append(f"has {', '.join(has)}")
        return f"no live worker {' or '.join(parts)} ({alive})"
    matching = [w for w in workers if not gaps[w.id]]
    if not matching:
        wanted = [said[key] for key in said if any(key in gap for gap in gaps.values())]
        return f"no live worker has all of: {', '.join(wanted)} ({alive})"
    # Some worker offers everything, but shares its host's queue with one that does not.
    shared = sorted({w.host for w in matching})
    return (
        f"the workers that offer all of it share host {', '.join(shared)} with workers that "
        f"do not, and a host's workers share its queue ({alive})"
    )


class Placer:
    """The API's placement: live workers read at most once a second (a burst of runs
    with requirements costs one read, not one per run), each run it places counted on
    its host at once so that the next goes to the next least busy one."""

    def __init__(self, queue: str, load: Callable[[], Capacity], max_age_s: float = 1.0) -> None:
        self.queue = queue
        self._load = load
        self.max_age_s = max_age_s
        self._capacity: Capacity | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def place(self, required: Requirements) -> Placement:
        with self._lock:
            now = time.monotonic()
            if self._capacity is None or now - self._loaded_at > self.max_age_s:
                self._capacity = self._load()
                self._loaded_at = now
            placement = choose(required, self._capacity, self.queue)
            if placement.host is not None:
                placed = self._capacity.placed
                placed[placement.host] = placed.get(placement.host, 0) + 1
            return placement
