"""One attempt of one queued run, inside a worker's work horse (a forked process).

A process per run is not an implementation detail: the runner captures output by
replacing ``sys.stdout``, turns SIGTERM into a teardown in the main thread, and a GPU is
handed over with ``CUDA_VISIBLE_DEVICES``, all of which are per process. rq forks a work
horse for every message; this module is what that horse calls.

What happens here, in order: claim the run in the tracking store (a second delivery of
the same message finds it taken and stops), send the process's output to the run's log
(followed live into the run's Redis stream: :mod:`omnilab.queue.live_log`), watch for
a cancellation request, and run the experiment through :func:`omnilab.runner.run_with`
with the run's recorded id. The horse is usually a spare (:mod:`omnilab.queue.spare`) that
did :func:`prepare` before its message arrived.

SIGTERM at any moment stops the run and tears its stack down; it is recorded as cancelled
when a cancellation was requested (the API asks the slot through rq's stop-job command,
and the slot sends SIGTERM), and otherwise (the worker is stopping or died) goes back to
the queue or fails, per the run's retry setting.

Outages: the horse's Redis client waits for Redis as its slot's does (rq records the
end of the message there, after the run); SIGTERM, or SIGUSR1 from a slot told to stop,
ends that wait. The tracking store
is waited for too, with backoff: before the claim, and before a statement that follows
an idle spell (the run's record at its end, after an outage during the run), so that a
restart of the store costs the run time, not its outcome.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

from omnilab import environment
from omnilab.errors import OmnilabError, TrackingStoreError
from omnilab.procs import process_start_time
from omnilab.progress import Reporter
from omnilab.queue.lifeline import die_with_parent
from omnilab.queue.live_log import LogShipper
from omnilab.queue.reconnect import store_outage
from omnilab.queue.settings import QueueSettings
from omnilab.runner import RunOptions, Terminated, run_with
from omnilab.tracking.base import Params
from omnilab.tracking.queued_runs import Claim, QueueStore, running_environment
from omnilab.tracking.store import TrackingStore

if TYPE_CHECKING:
    from omnilab.queue.slot import Slot


_slot: Slot | None = None

#: A spare's tracking-store connection, opened before its run was known, and when.
_ready_store: tuple[TrackingStore, float] | None = None

#: A connection idle longer than this is tried before it is used again: the server may
#: have restarted or dropped it meanwhile, and a claim or a record must not fail for that.
_CHECK_IDLE_AFTER_S = 2.0
#: Longest wait between two tries to reach the tracking store.
_STORE_BACKOFF_MAX_S = 5.0


class RunStore(TrackingStore):
    """The horse's tracking store: a statement after an idle spell (the run's record at
    its end, say) first checks the connection and, if the server went away meanwhile,
    waits for it (with backoff, for as long as the horse lives) and reconnects.

    Only the statements of this class's own methods are covered (stores made over it
    share its connection, not this check); statements a few milliseconds apart, those
    of one transaction among them, are never checked between."""

    label = ""
    _used_at = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._used_at = time.monotonic()

    def _fresh(self) -> None:
        now = time.monotonic()
        idle = now - self._used_at > _CHECK_IDLE_AFTER_S
        self._used_at = now
        if not idle:
            return
        conn = self.conn
        if not (conn.closed or conn.broken):
            try:
                with self._link.lock:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                pass
        with contextlib.suppress(Exception):
            conn.close()
        _wait_for_store(self.label, self.reconnect)

    def _execute(self, query: str, params: Params = ()) -> psycopg.Cursor[Any]:
        self._fresh()
        return super()._execute(query, params)

    def _dict_rows(self, query: str, params: Params = ()) -> list[dict[str, Any]]:
        self._fresh()
        return super()._dict_rows(query, params)

    def _dict_row(self, query: str, params: Params = ()) -> dict[str, Any] | None:
        self._fresh()
        return super()._dict_row(query, params)


def _wait_for_store(label: str, attempt: Any) -> Any:
    """``attempt()`` until the tracking store answers; SIGTERM (the run is stopped, or
    its slot is gone) ends the wait like any other."""
    delay, said = 0.25, False
    while True:
        try:
            return attempt()
        except (TrackingStoreError, psycopg.OperationalError) as exc:
            if not store_outage(exc):
                raise
            if not said:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                print(f"{label}waiting for the tracking store: {reason}", file=sys.__stderr__)
                said = True
        time.sleep(delay)
        delay = min(delay * 2, _STORE_BACKOFF_MAX_S)


def configure(slot: Slot) -> None:
    """Called once by the slot process before it starts taking messages."""
    global _slot
    _slot = slot


def prepare() -> None:
    """In a spare, before its run is known: what every run needs first and can be done
    ahead. Whatever fails here is simply done again, the usual way, when the run comes."""
    global _ready_store
    slot = _slot
    if slot is None:
        raise RuntimeError("omnilab.queue.horse.prepare runs inside `omnilab worker` only")
    signal.signal(signal.SIGUSR1, _worker_stopping)
    try:
        _ready_store = (RunStore.open(slot.settings), time.monotonic())
    except Exception:  # the run will open it and report what is wrong
        _ready_store = None
    # The git state of the experiments' repository, with what tells whether it changed.
    environment.prefetch_git(Path(slot.settings.experiments_dir).resolve())


def _open_store(settings: QueueSettings) -> TrackingStore:
    """The spare's connection when it still works, else a new one (waiting for the
    store while it cannot be reached)."""
    global _ready_store
    ready, _ready_store = _ready_store, None
    if ready is not None:
        store, opened_at = ready
        if time.monotonic() - opened_at < _CHECK_IDLE_AFTER_S:
            return store
        try:
            store.conn.execute("SELECT 1")
            if isinstance(store, RunStore):
                store._used_at = time.monotonic()
            return store
        except Exception:
            with contextlib.suppress(Exception):
                store.close()
    opened: TrackingStore = _wait_for_store(
        f"[{os.environ.get('RQ_JOB_ID', '')[:8]}] ", lambda: RunStore.open(settings)
    )
    return opened


def _stop_waiting_for_redis() -> None:
    if _slot is not None and _slot.reconnect is not None:
        _slot.reconnect.give_up()


def _raise_terminated(signum: int, frame: Any) -> None:
    _stop_waiting_for_redis()
    raise Terminated()


def _worker_stopping(signum: int, frame: Any) -> None:
    """SIGUSR1 from the slot, told to stop: the run goes on; what rq writes to Redis
    after it is not waited for (see SlotWorker.request_stop)."""
    _stop_waiting_for_redis()


def _after_the_run(signum: int, frame: Any) -> None:
    """SIGTERM once the run is recorded: nothing to stop but rq's last words to Redis,
    which are not waited for any more (the worker is stopping)."""
    _stop_waiting_for_redis()


def execute(run_id: str) -> None:
    """The task rq's work horse runs for a message: one attempt of ``run_id``."""
    slot = _slot
    if slot is None:
        raise RuntimeError("omnilab.queue.horse.execute runs inside `omnilab worker` only")
    die_with_parent(signal.SIGTERM, os.getppid())
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGUSR1, _worker_stopping)
    settings = slot.settings
    pid = os.getpid()
    run_dir = (Path(settings.runs_dir) / run_id).resolve()
    slot.catalog.refresh()  # a spare's copy may predate a change of the files
    store = _open_store(settings)
    if isinstance(store, RunStore):
        store.label = f"[{run_id[:8]}] "
    try:
        claim = QueueStore(store).claim(
            run_id,
            worker=slot.name,
            gpu=slot.gpu,
            run_dir=str(run_dir),
            environment=running_environment(pid, process_start_time(pid)),
            job=os.environ.get("RQ_JOB_ID"),  # set by rq for its horse
        )
        if claim is not None:
            _attempt(store, slot, claim, run_dir)
    finally:
        signal.signal(signal.SIGTERM, _after_the_run)
        store.close()


def _attempt(store: TrackingStore, slot: Slot, claim: Claim, run_dir: Path) -> None:
    run_id = claim.run_id
    queue = QueueStore(store)
    slot_pid = os.getppid()
    log_path = run_dir / "logs" / "output.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _output_to(log_path) as console:
        shipper = LogShipper.start(slot.settings, run_id, log_path)
        reporter = RunReporter(console, log_path, run_id, shipper)
        reporter.note(
            f"{claim.experiment}: attempt {claim.attempt} of {claim.max_attempts} "
            f"on {slot.name} ({slot.gpu_label})"
        )
        try:
            entry = slot.catalog.get(claim.experiment)
            options = RunOptions(
                settings=slot.settings, reporter=reporter, run_id=run_id, store=store
            )
            # The outcome's line is written by reporter.run_finished, before the outcome is
            # recorded: a log stream that sees the final status has every line by then.
            run_with(entry.cls, claim.params, options)
        except Terminated:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if queue.cancel_requested(run_id):
                # Each line goes into the log before the outcome it tells is recorded: a
                # live log stream ends when it sees the outcome.
                reporter.note("cancelled on request", ship=True)
                if not queue.record_cancelled(
                    run_id, "cancelled on request; its stack was torn down"
                ):
                    reporter.note("the run had finished meanwhile: its own outcome stands")
            else:
                # Re-parented: the slot died (its worker was killed), not a clean stop.
                how = "died" if os.getppid() != slot_pid else "stopped"
                status = queue.end_attempt(
                    run_id,
                    f"its worker {slot.worker_id} {how} during the run",
                    statuses=("running", "cancelled"),
                )
                reporter.note(f"stopped with its worker; the run is now {status}", ship=True)
        except OmnilabError as exc:
            # Refused before anything started (params no longer valid for the file on
            # this worker, a service this worker cannot provide, an unknown experiment).
            reporter.note(f"failed: {exc}", ship=True)
            queue.fail_claimed(run_id, str(exc))
        except Exception as exc:  # omnilab's own failure: say so rather than leave it running
            reporter.note(f"failed inside omnilab: {type(exc).__name__}: {exc}", ship=True)
            queue.fail_claimed(run_id, f"the worker failed: {type(exc).__name__}: {exc}")
        finally:
            reporter.close()


class RunReporter(Reporter):
    """Progress lines to the worker's console (prefixed with the run) and the run's log;
    the log also goes live to Redis through ``shipper`` (queue/live_log.py)."""

    def __init__(
        self, console: TextIO, log_path: Path, run_id: str, shipper: LogShipper | None = None
    ) -> None:
        super().__init__(console)
        self._log = open(log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._prefix = f"[{run_id[:8]}] "
        self._shipper = shipper

    def close(self) -> None:
        with self._lock:
            self._log.close()
        if self._shipper is not None:
            self._shipper.close()

    def run_finished(
        self, run_id: str, status: str, seconds: float | None, error: str | None = None
    ) -> None:
        # The runner records the outcome next: a reader that sees it has every line.
        self.note(f"{status}" + (f" in {seconds:.2f}s" if seconds else ""), ship=True)

    def note(self, message: str, *, ship: bool = False) -> None:
        """``ship``: the line is in the run's Redis stream when this returns (or Redis is
        away): the outcome it tells is recorded next."""
        with self._lock:
            with contextlib.suppress(OSError, ValueError):
                print(self._prefix + message, file=self.stream, flush=True)
            with contextlib.suppress(OSError, ValueError):
                self._log.write(f"omnilab: {message}\n")
                self._log.flush()
        if ship and self._shipper is not None:
            self._shipper.flush()


class _Discard(io.TextIOBase):
    """``sys.stdout`` during a run: the runner's tee writes the text to the log itself,
    and whoever asks for a file descriptor gets the one that leads to the log too."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, text: str) -> int:
        return len(text)

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True


@contextlib.contextmanager
def _output_to(log_path: Path) -> Iterator[TextIO]:
    """Point fds 1 and 2 at the run's log (so subprocesses' output lands there too) for
    the duration; yields a stream to the worker's own stderr for progress lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    console = os.fdopen(os.dup(saved_err), "w", buffering=1, encoding="utf-8", errors="replace")
    previous = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Discard(1), _Discard(2)
    try:
        yield console
    finally:
        sys.stdout, sys.stderr = previous
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        console.close()
