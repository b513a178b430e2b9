"""One attempt of one queued run, inside a worker's work horse (a forked process).

A process per run is not an implementation detail: the runner captures output by
replacing ``sys.stdout``, turns SIGTERM into a teardown in the main thread, and a GPU is
handed over with ``CUDA_VISIBLE_DEVICES``, all of which are per process. rq forks a work
horse for every message; this module is what that horse calls.

What happens here, in order: claim the run in the tracking store (a second delivery of
the same message finds it taken and stops), give it back to be placed again if this slot
does not offer what it requires (a worker that joined its host after it was placed
there), send the process's output to the run's log (followed live into the run's Redis
stream: :mod:`omnilab.queue.live_log`), refuse it if this host's experiment file is not
the code it was queued against, and run the experiment through
:func:`omnilab.runner.run_with` with the run's recorded id. The horse is usually a
spare (:mod:`omnilab.queue.spare`) that did :func:`prepare` before its message arrived.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

from omnilab import artifacts, environment, retained_stack
from omnilab.catalog import CatalogEntry
from omnilab.errors import OmnilabError, TrackingStoreError
from omnilab.host import host_name
from omnilab.procs import process_start_time
from omnilab.progress import Reporter
from omnilab.queue.lifeline import die_with_parent
from omnilab.queue.live_log import LogShipper
from omnilab.queue.placement import WAITING
from omnilab.queue.reconnect import store_outage
from omnilab.queue.settings import QueueSettings
from omnilab.requirements import Requirements, needs, unmet
from omnilab.runner import RunOptions, Terminated, run_with
from omnilab.tracking.base import Params
from omnilab.tracking.queued_runs import Claim, QueueStore, running_environment
from omnilab.tracking.store import MetricWriter, TrackingStore

if TYPE_CHECKING:
    from omnilab.queue.slot import Slot

#: A cancelled run's error: recorded by the run itself as it ends (RunOptions.stop_reason),
#: then by the attempt's own record, the same words, so that a reader never sees it change.
CANCELLED = "cancelled on request; its stack was torn down"


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
    #: The attempt this horse holds once it claimed the run (its number, the slot's
    #: name): the run's status is recorded only while that attempt is still the run's
    #: current one (see :meth:`update_run`).
    held: tuple[int, str] | None = None
    #: Where a refused outcome is said (the run's reporter).
    note: Callable[[str], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._used_at = time.monotonic()

    def update_run(self, run_id: str, **fields: Any) -> None:
        """A change of the run's status is recorded only while this horse's attempt is
        still the run's current one. A worker cut off long enough (its host lost, its
        heartbeat stopped) was taken for dead by a sweeper, which queued the run again
        or failed it; when such a worker comes back and finishes, the run has an
        outcome or another attempt already: this one's is not recorded, once said."""
        if self.held is None or "status" not in fields:
            super().update_run(run_id, **fields)
            return
        attempt, worker = self.held
        self._fresh()
        with self._transaction():
            current = QueueStore(self).current_attempt(run_id, lock=True)
            if current == ("running", attempt, worker):
                super().update_run(run_id, **fields)
                return
        self._not_recorded(attempt, worker, current, fields)

    def metric_writer(self, run_id: str, attempt: int | None = None) -> MetricWriter:
        """Metrics, like the status, land only while this horse's attempt holds the run."""
        if attempt is None and self.held is not None:
            attempt = self.held[0]
        return super().metric_writer(run_id, attempt)

    def holds_run(self, run_id: str) -> bool:
        """Whether this horse's attempt is still the run's current one (whatever its
        status: a cancelled attempt's last lines are still its own): the files of an
        attempt given up for lost are neither uploaded over the other's nor recorded."""
        if self.held is None:
            return True
        self._fresh()  # after an outage during the run, wait for the store as for a write
        current = QueueStore(self).current_attempt(run_id)
        return current is not None and current[1:] == self.held

    def _not_recorded(
        self,
        attempt: int,
        worker: str,
        current: tuple[str, int | None, str | None] | None,
        fields: dict[str, Any],
    ) -> None:
        if current is None:
            now = "deleted"
        elif current[0] == "running":
            now = f"running as attempt {current[1]} on {current[2]}"
        else:
            now = current[0]
        message = (
            f"attempt {attempt} on {worker} was given up for lost meanwhile (the run is "
            f"now {now}): its outcome ({fields['status']}) is not recorded"
        )
        # Kept data no record names (the run's record keeps the other attempt's).
        data = (fields.get("stack") or {}).get("data") or {}
        if data.get("state") == "kept" and data.get("path"):
            with contextlib.suppress(OSError):
                if retained_stack.remove(data["path"]):
                    message += f"; its kept stack data is removed ({data['path']})"
        if self.note is not None:
            self.note(message)
        else:
            print(f"{self.label}{message}", file=sys.__stderr__)

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
    # The artifact store's client, which the run's end would make otherwise.
    with contextlib.suppress(OmnilabError):
        target = artifacts.configured(slot.settings)
        if target is not None:
            target.connect()


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
        if claim is not None and isinstance(store, RunStore):
            store.held = (claim.attempt, slot.name)
        if claim is not None and not _give_back(store, slot, claim):
            _attempt(store, slot, claim, run_dir)
    finally:
        signal.signal(signal.SIGTERM, _after_the_run)
        store.close()


class CodeMismatch(OmnilabError):
    """This host's experiment file is not the one the run was queued against."""


def _requirements(claim: Claim) -> Requirements | None:
    """What the claimed run requires (checked readable by :func:`_give_back` first)."""
    return Requirements.model_validate(claim.requires) if claim.requires else None


def _give_back(store: TrackingStore, slot: Slot, claim: Claim) -> bool:
    """A run this slot does not offer what it requires goes back to the queue, its
    attempt not counted, for the reconciler to place again; True if it went back.

    Placement sends a run only to a host whose workers all offer what it requires, so
    this happens only when one that does not joined the host after the run was placed."""
    if not claim.requires or slot.offer is None:
        return False
    try:
        required = Requirements.model_validate(claim.requires)
    except ValueError as exc:  # a runtime plug-in this host does not have, say
        lacks = f"what it requires ({str(exc).splitlines()[-1].strip()})"
    else:
        missing = unmet(required, slot.offer)
        if not missing:
            return False
        said = needs(required)
        lacks = ", ".join(said.get(key, key) for key in missing)
    reason = (
        f"{WAITING}placing it again: worker {slot.name} on {slot.offer.host} took it "
        f"but does not offer {lacks}"
    )
    if QueueStore(store).release(claim.run_id, reason):
        print(f"[{claim.run_id[:8]}] {reason}", file=sys.__stderr__, flush=True)
    return True


def check_code(
    entry: CatalogEntry, queued: str | None, refresh: Callable[[], CatalogEntry] | None = None
) -> CatalogEntry:
    """The entry to run, if its file is the code the run was queued against (or that is
    not known); else :class:`CodeMismatch`, naming the host, the experiment, both short
    hashes and what to do. ``refresh()`` returns the entry read again from the file: a
    change made within the catalog's recheck interval is seen before refusing."""
    if not queued or entry.sha256 == queued:
        return entry
    if refresh is not None:
        entry = refresh()
        if entry.sha256 == queued:
            return entry
    raise CodeMismatch(
        f"code mismatch on host {host_name()}: experiment {entry.name} is "
        f"{entry.relative} with sha256 {entry.sha256[:12]} here, but the run was queued "
        f"against {queued[:12]}; give every host the same experiments folder "
        "(OMNILAB_EXPERIMENTS_DIR) and queue the run again"
    )


def _attempt(store: TrackingStore, slot: Slot, claim: Claim, run_dir: Path) -> None:
    run_id = claim.run_id
    queue = QueueStore(store)
    slot_pid = os.getppid()
    log_path = run_dir / "logs" / "output.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _output_to(log_path) as console:
        shipper = LogShipper.start(slot.settings, run_id, log_path)
        reporter = RunReporter(console, log_path, run_id, shipper)
        if isinstance(store, RunStore):
            store.note = reporter.note
        reporter.note(
            f"{claim.experiment}: attempt {claim.attempt} of {claim.max_attempts} "
            f"on {slot.name} ({slot.gpu_label})"
        )
        try:
            catalog = slot.catalog

            def reread() -> CatalogEntry:
                catalog.refresh(force=True)
                return catalog.get(claim.experiment)

            entry = check_code(catalog.get(claim.experiment), claim.code_sha256, reread)
            required = _requirements(claim)
            options = RunOptions(
                # A run that requires a runtime gets it, whatever this worker's default.
                runtime=required.runtime if required is not None else None,
                settings=slot.settings,
                reporter=reporter,
                run_id=run_id,
                store=store,
                stop_reason=lambda: CANCELLED if queue.cancel_requested(run_id) else None,
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
                if not queue.record_cancelled(run_id, CANCELLED, attempt=claim.attempt):
                    reporter.note("the run had finished meanwhile: its own outcome stands")
            else:
                # Re-parented: the slot died (its worker was killed), not a clean stop.
                how = "died" if os.getppid() != slot_pid else "stopped"
                status = queue.end_attempt(
                    run_id,
                    f"its worker {slot.worker_id} {how} during the run",
                    statuses=("running", "cancelled"),
                    attempt=claim.attempt,
                )
                reporter.note(f"stopped with its worker; the run is now {status}", ship=True)
        except OmnilabError as exc:
            # Refused before anything started (params no longer valid for the file on
            # this worker, a service this worker cannot provide, an unknown experiment).
            reporter.note(f"failed: {exc}", ship=True)
            queue.fail_claimed(run_id, str(exc), attempt=claim.attempt)
        except Exception as exc:  # omnilab's own failure: say so rather than leave it running
            reporter.note(f"failed inside omnilab: {type(exc).__name__}: {exc}", ship=True)
            queue.fail_claimed(
                run_id,
                f"the worker failed: {type(exc).__name__}: {exc}",
                attempt=claim.attempt,
            )
        finally:
            reporter.close()
        _last_lines_to_store(store, slot.settings, run_id, log_path, console)


def _last_lines_to_store(
    store: TrackingStore, settings: QueueSettings, run_id: str, log_path: Path, console: TextIO
) -> None:
    """The runner uploads the log before it records the outcome; what this attempt
    wrote after it (a cancellation, a refusal before the run started) goes to the
    artifact store too, so that the log read from there is the whole of it."""
    try:
        target = artifacts.configured(settings)
        if target is None or not log_path.is_file() or not store.holds_run(run_id):
            return
        record = store.get_run(run_id)
        upload = dict(record.artifacts_upload or {})
        if "error" in upload or record.artifacts_url not in (None, target.url):
            return  # the files stayed here, or went to another store: left as recorded
        if (upload.get("log") or {}).get("size") == log_path.stat().st_size:
            return
        [sent] = target.put([(artifacts.log_key(run_id), log_path)])
        upload.setdefault("files", 0)
        upload["log"] = {"size": sent.size, "sha256": sent.sha256}
        store.update_run(run_id, artifacts_url=target.url, artifacts_upload=upload)
    except (OmnilabError, OSError, psycopg.Error) as exc:
        with contextlib.suppress(OSError, ValueError):
            print(f"[{run_id[:8]}] warning: the log's last lines stay here: {exc}", file=console)


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
