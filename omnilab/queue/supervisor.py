"""``omnilab worker``: runs queued runs, several at a time, handing out GPUs.

The process started by the command is a supervisor. It starts one slot process per
concurrent run (see :mod:`omnilab.queue.slot`), restarts a slot that dies, writes the
worker's heartbeat to the tracking store, and sweeps (:mod:`omnilab.queue.reconcile`):
attempts of dead workers are ended and lost messages re-sent.

Stopping: the first SIGINT/SIGTERM lets the runs in progress finish and takes no new
ones; a second stops them (their stacks are torn down, and each run goes back to the
queue or fails, per its retry setting). SIGKILL of the supervisor takes the slots down
at once (parent-death signal), each run's horse tears its stack down, and the next sweep
(by any worker or the API) finds nothing left "running".
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from omnilab.catalog import Catalog
from omnilab.errors import OmnilabError, UsageError
from omnilab.gpu import host_gpus
from omnilab.procs import process_start_time
from omnilab.progress import Reporter
from omnilab.queue.broker import Broker
from omnilab.queue.reconcile import Reconciler
from omnilab.queue.settings import QueueSettings
from omnilab.redact import redact_url
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import WorkerStore
from omnilab.version import __version__

#: A slot that dies this many times within a minute is not restarted again.
MAX_RESTARTS_PER_MINUTE = 5


def parse_gpus(value: str | None) -> list[str]:
    """``--gpus``: ``all`` (default: the GPUs this host shows), ``none``, or ``0,1,...``."""
    if value is None or value.strip().lower() == "all":
        return [str(g.index) for g in host_gpus()]
    if value.strip().lower() in ("none", ""):
        return []
    gpus = [v.strip() for v in value.split(",") if v.strip()]
    bad = [g for g in gpus if not (g.isdigit() or g.startswith(("GPU-", "MIG-")))]
    if bad:
        raise UsageError(
            f"--gpus {value!r}: give GPU indexes or UUIDs separated by commas, 'all' or 'none'"
        )
    if len(set(gpus)) != len(gpus):
        raise UsageError(f"--gpus {value!r}: a GPU is listed twice; each goes to one run at a time")
    return gpus


def plan_slots(concurrency: int | None, gpus: list[str]) -> list[str | None]:
    """Which GPU each slot hands out: the first slots one GPU each, the rest none."""
    count = concurrency if concurrency is not None else max(1, len(gpus))
    if count < 1:
        raise UsageError("--concurrency must be at least 1")
    return [gpus[i] if i < len(gpus) else None for i in range(count)]


@dataclass
class _SlotProcess:
    index: int
    gpu: str | None
    queues: list[str]
    proc: subprocess.Popen[bytes] | None = None
    deaths: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        settings: QueueSettings,
        *,
        concurrency: int | None = None,
        gpus: list[str] | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.settings = settings
        self.gpus = list(gpus or [])
        self.plan = plan_slots(concurrency, self.gpus)
        self.reporter = reporter or Reporter()
        self.id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.slots = [
            _SlotProcess(
                i,
                gpu,
                [settings.gpu_queue, settings.queue] if gpu is not None else [settings.queue],
            )
            for i, gpu in enumerate(self.plan)
        ]
        self._signals = 0
        self._last_error = ""
        self._reconciler: Reconciler | None = None

    # -- signals --------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        running = sum(1 for s in self.slots if s.proc and s.proc.poll() is None)
        if self._signals == 1:
            self.reporter.note(
                f"worker {self.id}: stopping; runs in progress finish first "
                "(signal again to stop them now)"
            )
        else:
            self.reporter.note(f"worker {self.id}: stopping {running} slot(s) now")
        self._forward(signal.SIGTERM)

    def _forward(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.proc.pid, sig)

    # -- slots ----------------------------------------------------------------------

    def _start_slot(self, slot: _SlotProcess) -> None:
        argv = [
            sys.executable,
            "-m",
            "omnilab.queue.slot",
            "--worker-id",
            self.id,
            "--index",
            str(slot.index),
            "--parent",
            str(os.getpid()),
        ]
        for queue in slot.queues:
            argv += ["--queue", queue]
        if slot.gpu is not None:
            argv += ["--gpu", slot.gpu]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot.gpu or ""}
        # A process group of its own: a Ctrl-C in the terminal reaches the supervisor
        # alone, which decides what the slots are told.
        slot.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, process_group=0)

    def _check_slots(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is None or slot.proc.poll() is None:
                continue
            slot.deaths = [t for t in slot.deaths if now - t < 60] + [now]
            if len(slot.deaths) > MAX_RESTARTS_PER_MINUTE:
                raise OmnilabError(
                    f"worker {self.id}: slot {slot.index} keeps dying "
                    f"(exit status {slot.proc.returncode}); stopping"
                )
            self.reporter.note(
                f"worker {self.id}: slot {slot.index} exited (status {slot.proc.returncode}); "
                "restarting it"
            )
            self._start_slot(slot)

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> int:
        settings = self.settings
        broker = Broker(settings.redis_url, settings.queue)
        broker.ping()
        catalog = Catalog(settings.experiments_dir)
        store = TrackingStore.open(settings)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            pid = os.getpid()
            queues = sorted({q for s in self.slots for q in s.queues})
            WorkerStore(store).register(
                self.id,
                pid=pid,
                pid_start=process_start_time(pid),
                concurrency=len(self.slots),
                gpus=self.gpus,
                queues=queues,
                version=__version__,
            )
            self._describe(catalog, broker, store, queues)
            self._sweep(store, broker)
            previous = {
                s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                for slot in self.slots:
                    self._start_slot(slot)
                self._loop(store, broker)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            self._forward(signal.SIGTERM)
            for slot in self.slots:
                if slot.proc is not None:
                    slot.proc.wait()
            try:
                WorkerStore(store).stopped(self.id)
            finally:
                store.close()
                broker.close()
        self.reporter.note(f"worker {self.id}: stopped")
        return 0

    def _loop(self, store: TrackingStore, broker: Broker) -> None:
        settings = self.settings
        workers = WorkerStore(store)
        beat_every = min(5.0, settings.worker_ttl / 3)
        next_beat = time.monotonic() + beat_every
        next_sweep = time.monotonic() + settings.reconcile_interval
        while True:
            time.sleep(0.2)
            if self._signals:
                if all(s.proc is None or s.proc.poll() is not None for s in self.slots):
                    return
            else:
                self._check_slots()
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + beat_every
                with contextlib.suppress(psycopg.Error):  # the sweep reports store trouble
                    workers.heartbeat(self.id)
            if now >= next_sweep and not self._signals:
                next_sweep = now + settings.reconcile_interval
                self._sweep(store, broker)

    def _sweep(self, store: TrackingStore, broker: Broker) -> None:
        """Reconcile; a failure is reported once and tried again next time, never fatal
        (the runs in progress do not depend on it)."""
        try:
            if self._reconciler is None:
                self._reconciler = Reconciler(
                    broker,
                    worker_ttl=self.settings.worker_ttl,
                    resend_after=self.settings.resend_after,
                )
            done = self._reconciler.sweep(store)
            error = done.queue_error or ""
        except Exception as exc:
            error = f"sweep failed: {type(exc).__name__}: {exc}".splitlines()[0]
            if store.conn.closed or store.conn.broken:
                with contextlib.suppress(Exception):
                    store.reconnect()
        if error and error != self._last_error:
            self.reporter.note(f"worker {self.id}: {error}")
        self._last_error = error

    def _describe(
        self, catalog: Catalog, broker: Broker, store: TrackingStore, queues: list[str]
    ) -> None:
        note = self.reporter.note
        slots = ", ".join(
            f"{s.index}: GPU {s.gpu}" if s.gpu is not None else f"{s.index}: CPU"
            for s in self.slots
        )
        note(f"worker {self.id}: {len(self.slots)} slot(s) [{slots}]")
        unused = self.gpus[len(self.slots) :]
        if unused:
            note(
                f"  GPUs {', '.join(unused)} stay unused: --concurrency {len(self.slots)} is "
                f"lower than the {len(self.gpus)} GPUs given"
            )
        note(f"  queues: {', '.join(queues)} on {redact_url(broker.url)}")
        note(f"  tracking store: {store.location}")
        names = ", ".join(catalog.names()) or "none"
        note(f"  experiments in {catalog.folder}: {names}")
        for problem in catalog.problems:
            note(f"  warning: {problem}")
