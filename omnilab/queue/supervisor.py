"""``omnilab worker``: runs queued runs, several at a time, handing out GPUs.

The process started by the command is a supervisor. It registers what the worker
offers (its host, the runtimes that work there, its GPUs with their model and memory,
its labels: :mod:`omnilab.queue.placement` places runs by them), starts one slot
process per concurrent run (see :mod:`omnilab.queue.slot`), each listening to its host's
own queues and the shared ones, restarts a slot that dies, writes the worker's heartbeat
to the tracking store, and sweeps (:mod:`omnilab.queue.reconcile`): attempts of dead
workers are ended, runs waiting for capacity placed, lost messages re-sent. Beside the
slots it starts the host's task lane (:mod:`omnilab.queue.lane`): promotions, rollbacks
and discards of data this host holds, handed over from elsewhere. It also removes, at
start, what this host's dead processes left (``omnilab gc``: a host back after a crash),
and every ``OMNILAB_RETENTION_SWEEP_INTERVAL`` its host's kept stack data past retention.

Stopping: the first SIGINT/SIGTERM lets the runs in progress finish and takes no new
ones; a second stops them (their stacks are torn down, and each run goes back to the
queue or fails, per its retry setting). SIGKILL of the supervisor takes the slots down
at once (parent-death signal), each run's horse tears its stack down, and the next sweep
(by any worker or the API) finds nothing left "running".

Outages: a worker waits out any outage of the queue's Redis (its slots do, see
:mod:`omnilab.queue.reconnect`) or of the tracking store (the heartbeat reconnects with
backoff, and the worker registers again if the store lost its record), also when it
starts. It exits only when told to, or on an error that waiting cannot cure, named in
its last line: Redis or the store refusing its credentials, a URL that cannot be used,
a host name DNS says does not exist (at the start), or a slot that keeps failing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from omnilab import runtimes
from omnilab.catalog import Catalog
from omnilab.config import Settings
from omnilab.errors import OmnilabError, TrackingStoreError, TrackingUrlError, UsageError
from omnilab.gpu import host_gpus
from omnilab.host import host_name
from omnilab.procs import process_start_time
from omnilab.progress import Reporter
from omnilab.queue.broker import Broker, QueueUnavailable
from omnilab.queue.hosttasks import lane_name
from omnilab.queue.lane import LANE
from omnilab.queue.placement import worker_queues
from omnilab.queue.reconcile import Reconciler
from omnilab.queue.reconnect import Reconnect, store_outage, unknown_host
from omnilab.queue.settings import QueueSettings
from omnilab.queue.slot import FATAL
from omnilab.redact import redact_text, redact_url
from omnilab.requirements import GpuOffer, Offer
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import WorkerStore
from omnilab.version import __version__

#: A slot that dies this many times within a minute is not restarted again.
MAX_RESTARTS_PER_MINUTE = 5
#: Longest wait between two tries to reach the tracking store while it is away.
STORE_MAX_BACKOFF_S = 5.0
#: Wait before restarting a slot that died: doubled at each death within a minute.
FIRST_RESTART_DELAY_S = 0.5


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


def gpu_details(gpus: list[str]) -> list[GpuOffer]:
    """Model and memory of each GPU given to the worker, as this host's driver reports
    them (unknown without one: such a GPU matches no requirement on model or memory)."""
    found = host_gpus() if gpus else []
    details = []
    for given in gpus:
        gpu = next((g for g in found if given in (str(g.index), g.uuid)), None)
        if gpu is None:
            gpu = next((g for g in found if g.uuid.startswith(given)), None)
        details.append(
            GpuOffer(id=given, model=gpu.name, memory_mib=gpu.memory_mib)
            if gpu is not None
            else GpuOffer(id=given)
        )
    return details


def host_offer(settings: Settings, gpus: list[str], labels: dict[str, str]) -> Offer:
    """What a worker with ``gpus`` and ``labels`` offers on this host."""
    return Offer(
        host=host_name(),
        runtimes=runtimes.working(settings),
        gpus=gpu_details(gpus),
        labels=labels,
    )


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
    restart_at: float | None = None  # dead, to be started again then
    cause: int | None = None  # read end of the pipe where the slot says why it ended
    #: The host's task lane (:mod:`omnilab.queue.lane`) rather than a run slot.
    lane: bool = False

    @property
    def label(self) -> str:
        return "host tasks" if self.lane else f"slot {self.index}"


class Supervisor:
    def __init__(
        self,
        settings: QueueSettings,
        *,
        concurrency: int | None = None,
        gpus: list[str] | None = None,
        labels: dict[str, str] | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.settings = settings
        self.gpus = list(gpus or [])
        self.labels = dict(labels or {})
        self.plan = plan_slots(concurrency, self.gpus)
        self.reporter = reporter or Reporter()
        self.host = host_name()
        self.id = f"{self.host}-{os.getpid()}-{secrets.token_hex(2)}"
        self.slots = [
            _SlotProcess(i, gpu, worker_queues(settings.queue, self.host, gpu=gpu is not None))
            for i, gpu in enumerate(self.plan)
        ]
        # This host's promotions, rollbacks and discards (omnilab.queue.hosttasks), in a
        # process of their own: never behind a run.
        self.lane = _SlotProcess(-1, None, [lane_name(settings.queue, self.host)], lane=True)
        #: What it offers: known once it looked at its host's runtimes (in run()).
        self.offer = Offer(host=self.host, labels=self.labels)
        self._signals = 0
        self._last_error = ""
        self._reconciler: Reconciler | None = None
        self._store_down_since: float | None = None
        self._store_retry_s = 0.0
        #: Redis's retry policy while the worker waits for it at its start.
        self._waiting: Reconnect | None = None

    # -- signals --------------------------------------------------------------------

    @property
    def processes(self) -> list[_SlotProcess]:
        """The slots and the task lane: every process the supervisor starts."""
        return [*self.slots, self.lane]

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
        for slot in self.processes:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.proc.pid, sig)

    # -- slots ----------------------------------------------------------------------

    def _start_slot(self, slot: _SlotProcess) -> None:
        argv = [sys.executable, "-m", "omnilab.queue.lane" if slot.lane else "omnilab.queue.slot"]
        argv += ["--worker-id", self.id, "--parent", str(os.getpid())]
        if not slot.lane:
            argv += ["--index", str(slot.index)]
        for queue in slot.queues:
            argv += ["--queue", queue]
        if slot.gpu is not None:
            argv += ["--gpu", slot.gpu]
        if not slot.lane:
            # What this slot offers a run: the worker's runtimes and labels, its own GPU.
            own = [g for g in self.offer.gpus if g.id == slot.gpu]
            argv += ["--offer", self.offer.model_copy(update={"gpus": own}).model_dump_json()]
        # Where the slot says why it ended (a pipe: nothing to clean up after a SIGKILL).
        self._close_cause(slot)
        slot.cause, write_end = os.pipe()
        argv += ["--cause-fd", str(write_end)]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot.gpu or ""}
        try:
            # A process group of its own: a Ctrl-C in the terminal reaches the supervisor
            # alone, which decides what the slots are told.
            slot.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, process_group=0, pass_fds=(write_end,)
            )
        finally:
            os.close(write_end)

    @staticmethod
    def _close_cause(slot: _SlotProcess) -> None:
        if slot.cause is not None:
            with contextlib.suppress(OSError):
                os.close(slot.cause)
            slot.cause = None

    @staticmethod
    def _read_cause(slot: _SlotProcess) -> str:
        """What the dead slot said about its end ("" if nothing)."""
        if slot.cause is None:
            return ""
        os.set_blocking(slot.cause, False)
        try:
            return os.read(slot.cause, 4096).decode(errors="replace").strip()
        except OSError:  # nothing written (its children may hold the pipe open)
            return ""

    def _check_slots(self) -> None:
        """Restart dead slots, after a delay that grows while they keep dying; stop the
        worker, saying why, when one cannot be helped by restarting."""
        now = time.monotonic()
        for slot in self.processes:
            if slot.proc is None or slot.proc.poll() is None:
                continue
            if slot.restart_at is None:
                status = slot.proc.returncode
                cause = self._read_cause(slot)
                why = f"exit status {status}" + (f": {cause}" if cause else "")
                if status == FATAL:
                    raise OmnilabError(f"worker {self.id}: {slot.label}: {cause}; stopping")
                slot.deaths = [t for t in slot.deaths if now - t < 60] + [now]
                if len(slot.deaths) > MAX_RESTARTS_PER_MINUTE:
                    raise OmnilabError(
                        f"worker {self.id}: {slot.label} failed {len(slot.deaths)} times "
                        f"within a minute (last: {why}); stopping"
                    )
                delay = FIRST_RESTART_DELAY_S * 2 ** (len(slot.deaths) - 1)
                slot.restart_at = now + delay
                self.reporter.note(
                    f"worker {self.id}: {slot.label} exited ({why}); restarting it in {delay:g} s"
                )
            if now >= slot.restart_at:
                slot.restart_at = None
                self._start_slot(slot)

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> int:
        settings = self.settings
        reached = self._wait_for_servers()
        if reached is None:  # told to stop while it waited
            self.reporter.note(f"worker {self.id}: stopped before it started")
            return 0
        broker, store = reached
        self.offer = host_offer(settings, self.gpus, self.labels)
        catalog = Catalog(settings.experiments_dir)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            queues = sorted({q for s in self.processes for q in s.queues})
            self._register(store)
            self._describe(catalog, broker, store, queues)
            # What this host's dead workers left (a host back after a crash) goes before
            # anything new starts; then the runs they held are ended (the sweep).
            self._remove_leftovers()
            self._sweep(store, broker)
            self._sweep_kept_data(store)
            previous = {
                s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                for slot in self.processes:
                    self._start_slot(slot)
                self._loop(store, broker)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            self._forward(signal.SIGTERM)
            for slot in self.processes:
                if slot.proc is not None:
                    slot.proc.wait()
            try:
                WorkerStore(store).stopped(self.id)
            except Exception as exc:  # the sweepers will find it stopped by its pid or age
                self.reporter.note(
                    f"worker {self.id}: could not record its stop in the tracking store: "
                    f"{_first_line(exc)}"
                )
            finally:
                with contextlib.suppress(Exception):
                    store.close()
                broker.close()
                for slot in self.processes:
                    self._close_cause(slot)
        self.reporter.note(f"worker {self.id}: stopped")
        return 0

    # -- starting: the servers may be away (an outage, or not up yet) ------------------

    def _wait_for_servers(self) -> tuple[Broker, TrackingStore] | None:
        """The queue's Redis, then the tracking store, waited for as long as they are
        away, with the backoff the running worker uses for an outage: a worker started
        while a server is down (a reboot, the servers and the workers started together)
        takes runs once it is up. Errors that waiting cannot cure (credentials refused,
        a URL that cannot be used, a host name DNS does not know) end it with one line.
        None: a signal came while it waited; nothing was started."""
        previous = {
            s: signal.signal(s, self._on_signal_waiting) for s in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            if not self._wait_for_redis():
                return None
            store = self._wait_for_store()
            if store is None:
                return None
            return Broker(self.settings.redis_url, self.settings.queue), store
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _told_to_stop(self) -> bool:
        """A signal came (read through a call: a handler changes it meanwhile)."""
        return self._signals > 0

    def _on_signal_waiting(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._waiting is not None:
            self._waiting.give_up()

    def _wait_for_redis(self) -> bool:
        """Until Redis answers (True), or a signal came (False); QueueFatal, or
        QueueUnavailable for a URL that is not Redis's, when waiting cannot help."""
        url = self.settings.redis_url

        def say(message: str) -> None:
            self.reporter.note(f"worker {self.id}: {redact_text(message, url)}")

        # The slots' policy (omnilab.queue.reconnect): the same backoff, the same words
        # once when it waits and once when Redis answers.
        self._waiting = Reconnect(f"Redis at {redact_url(url)}", say, unknown_host_fatal=True)
        broker = Broker(url, self.settings.queue, retry=self._waiting)
        try:
            broker.ping()
        except QueueUnavailable:
            if self._told_to_stop():
                return False
            raise
        finally:
            self._waiting = None
            broker.close()
        return not self._told_to_stop()

    def _wait_for_store(self) -> TrackingStore | None:
        """The tracking store, once it answers; None if a signal came first. Only a
        server at ``OMNILAB_TRACKING_URL`` is waited for: the embedded one is this
        host's to start, and its failure to start is not an outage."""
        settings = self.settings
        retry_s, since = 0.25, None
        while not self._told_to_stop():
            try:
                store = TrackingStore.open(settings)
            except TrackingUrlError:
                raise
            except (psycopg.Error, OSError, TrackingStoreError) as exc:
                if not settings.tracking_dsn or not store_outage(exc) or unknown_host(exc):
                    raise
                if since is None:
                    since = time.monotonic()
                    self.reporter.note(
                        f"worker {self.id}: cannot reach the tracking store at "
                        f"{redact_url(settings.tracking_dsn)} ({_cause(exc)}); waiting for it, "
                        f"trying again every {STORE_MAX_BACKOFF_S:g} s at most"
                    )
                _sleep_unless(self._told_to_stop, retry_s)
                retry_s = min(retry_s * 2, STORE_MAX_BACKOFF_S)
                continue
            if since is not None:
                self.reporter.note(
                    f"worker {self.id}: the tracking store answers again "
                    f"(after {time.monotonic() - since:.1f} s)"
                )
            if self._told_to_stop():
                store.close()
                return None
            return store
        return None

    def _register(self, store: TrackingStore) -> None:
        pid = os.getpid()
        WorkerStore(store).register(
            self.id,
            pid=pid,
            pid_start=process_start_time(pid),
            concurrency=len(self.slots),
            gpus=self.gpus,
            queues=sorted({q for s in self.processes for q in s.queues}),
            version=__version__,
            runtimes=self.offer.runtimes,
            gpu_details=self.offer.gpus,
            labels=self.offer.labels,
        )

    def _loop(self, store: TrackingStore, broker: Broker) -> None:
        settings = self.settings
        beat_every = min(5.0, settings.worker_ttl / 3)
        next_beat = time.monotonic() + beat_every
        next_sweep = time.monotonic() + settings.reconcile_interval
        next_kept_sweep = time.monotonic() + settings.retention_sweep_interval
        unready, next_ready_check = self._registrations(), 0.0
        while True:
            time.sleep(0.2)
            if unready and time.monotonic() >= next_ready_check:
                unready = self._say_when_ready(broker, unready)
                next_ready_check = time.monotonic() + 1.0
            if self._signals:
                if all(s.proc is None or s.proc.poll() is not None for s in self.processes):
                    return
            else:
                self._check_slots()
            now = time.monotonic()
            if now >= next_beat:
                # While the store is away, the next try comes sooner than the next beat
                # would, and never later: the beat must resume as soon as it is back.
                beaten = self._beat(store)
                next_beat = time.monotonic() + (
                    beat_every if beaten else min(self._store_retry_s, beat_every)
                )
            if now >= next_sweep and not self._signals and self._store_down_since is None:
                next_sweep = now + settings.reconcile_interval
                self._sweep(store, broker)
            if now >= next_kept_sweep and not self._signals and self._store_down_since is None:
                next_kept_sweep = now + settings.retention_sweep_interval
                self._sweep_kept_data(store)

    def _registrations(self) -> list[str]:
        """The Redis keys its processes' rq workers hold once they wait for messages."""
        from rq import Worker

        names = [f"{self.id}.{slot.index}" for slot in self.slots] + [f"{self.id}.{LANE}"]
        return [Worker.redis_worker_namespace_prefix + name for name in names]

    def _say_when_ready(self, broker: Broker, keys: list[str]) -> list[str]:
        """Say once when every slot and the task lane take work: the worker is recorded
        as alive from its start, minutes before that when its start-up chores (a host back
        after a crash) take long, and until then a promotion handed to its host waits."""
        try:
            left = [key for key in keys if not broker.redis.exists(key)]
        except Exception:  # Redis away: said by the slots; looked at again next time
            return keys
        if not left:
            self.reporter.note(
                f"worker {self.id}: ready: {len(self.slots)} slot(s) and the host's tasks take work"
            )
        return left

    def _beat(self, store: TrackingStore) -> bool:
        """The heartbeat; reconnects to the store first when its connection broke. False
        while the store cannot be reached (said once, and once more when it is back)."""
        try:
            if store.conn.closed or store.conn.broken:
                with contextlib.suppress(Exception):
                    store.conn.close()
                store.reconnect()
            if not WorkerStore(store).heartbeat(self.id):
                # The store lost this worker's record, or a sweeper took it for dead.
                self._register(store)
                self.reporter.note(
                    f"worker {self.id}: the tracking store had no live record of it; "
                    "registered it again"
                )
        except (psycopg.Error, OSError, TrackingStoreError) as exc:
            # TrackingStoreError: the reconnection above found the store still away.
            if not store_outage(exc):
                raise OmnilabError(
                    f"worker {self.id}: cannot use the tracking store at {store.location}: "
                    f"{_first_line(exc)}; stopping"
                ) from None
            if self._store_down_since is None:
                self._store_down_since = time.monotonic()
                self._store_retry_s = 0.25
                self.reporter.note(
                    f"worker {self.id}: cannot reach the tracking store at {store.location} "
                    f"({_first_line(exc)}); waiting for it, its runs go on"
                )
            else:
                self._store_retry_s = min(self._store_retry_s * 2, STORE_MAX_BACKOFF_S)
            return False
        if self._store_down_since is not None:
            down = time.monotonic() - self._store_down_since
            self._store_down_since = None
            self.reporter.note(
                f"worker {self.id}: the tracking store answers again (after {down:.1f} s)"
            )
        return True

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

    def _remove_leftovers(self) -> None:
        """``omnilab gc`` for this host: stacks whose owner died (a run's process killed
        with its watcher, the host itself gone down), and the runtimes' own leftovers.
        Stacks of other hosts and of live processes are left alone."""
        from omnilab import gc

        try:
            found, _ = gc.collect(self.settings)
        except Exception as exc:
            self.reporter.note(
                f"worker {self.id}: could not look for leftovers: {_first_line(exc)}"
            )
            return
        removed = [item for item in found if item.removed]
        if removed:
            what = ", ".join(f"{item.kind} {item.name}" for item in removed)
            self.reporter.note(
                f"worker {self.id}: removed what dead processes of this host left: {what}"
            )
        for item in found:
            if item.error:
                self.reporter.note(
                    f"worker {self.id}: could not remove {item.kind} {item.name}: {item.error}"
                )

    def _sweep_kept_data(self, store: TrackingStore) -> None:
        """This host's kept stack data past OMNILAB_RETENTION_DAYS goes (no other host can
        remove it); not while a promotion runs, which may be reopening it."""
        from omnilab.promote import retention
        from omnilab.promote.records import PromotionStore

        try:
            with PromotionStore(store).lock_if_free() as free:
                if free:
                    retention.sweep(store, self.reporter)
        except Exception as exc:  # tried again next time; the runs go on
            self.reporter.note(
                f"worker {self.id}: could not sweep expired kept data: {_first_line(exc)}"
            )

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
        note(f"  host {self.host}: runtimes {', '.join(self.offer.runtimes) or 'none'}")
        for gpu in self.offer.gpus:
            note(f"  GPU {gpu.describe()}")
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.offer.labels.items()))
        note(f"  labels: {labels or 'none'}")
        note(f"  queues: {', '.join(queues)} on {redact_url(broker.url)}")
        note(f"  host {self.host}: its promotions, rollbacks and discards on {self.lane.queues[0]}")
        note(f"  tracking store: {store.location}")
        names = ", ".join(catalog.names()) or "none"
        note(f"  experiments in {catalog.folder}: {names}")
        for problem in catalog.problems:
            note(f"  warning: {problem}")


def _cause(exc: BaseException) -> str:
    """Why the store could not be reached, without the URL its message starts with
    (said once already, in the same line)."""
    text = _first_line(exc)
    prefix = "cannot reach the tracking store at "
    if text.startswith(prefix):
        _, _, reason = text[len(prefix) :].partition(": ")
        return reason or text
    return text


def _sleep_unless(stop: Any, seconds: float) -> None:
    """Sleep, waking early when ``stop()`` turns true (a signal while it waits)."""
    end = time.monotonic() + seconds
    while not stop() and time.monotonic() < end:
        time.sleep(min(0.1, end - time.monotonic()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__
