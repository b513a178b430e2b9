"""A worker slot: one rq worker process, running one run at a time in a forked horse.

The horse is forked ahead of its message (a spare, see :mod:`omnilab.queue.spare`): the
slot keeps one ready while it waits, and forks the next as soon as it has handed a run
to the current one.

``omnilab worker`` starts one slot per concurrent run (``python -m omnilab.queue.slot``);
a slot that owns a GPU listens to the GPU queue first, and every run it starts sees only
that GPU (``CUDA_VISIBLE_DEVICES``), so two runs never share one.

The processes of a worker, and where each one's code is:

- **worker** (the supervisor, :mod:`omnilab.queue.supervisor`): ``omnilab worker``
  itself; starts and restarts the slots, writes the heartbeat, sweeps;
- **slot** (this module): :class:`Slot` says which one it is (its index, its GPU);
  :class:`SlotWorker` is the rq worker it runs;
- **spare** (:mod:`omnilab.queue.spare`): a horse forked before its message arrives;
- **horse** (:mod:`omnilab.queue.horse`): the process of one attempt of one run.

Outages of the queue's Redis are waited out (:mod:`omnilab.queue.reconnect`): a slot
never ends for one. It ends when told to, or on an error it cannot wait out; then it
writes the reason to its ``--cause-fd`` (a pipe) for the worker, which restarts it or,
when the error is fatal (exit status :data:`FATAL`), stops with that reason.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job

from omnilab.catalog import Catalog
from omnilab.queue import horse, spare
from omnilab.queue.broker import Broker
from omnilab.queue.lifeline import die_with_parent
from omnilab.queue.reconnect import QueueFatal, Reconnect
from omnilab.queue.settings import QueueSettings, get_queue_settings
from omnilab.redact import redact_url
from omnilab.requirements import Offer
from omnilab.tracking.queued_runs import QueueStore
from omnilab.tracking.store import TrackingStore

#: A slot's exit status when waiting or restarting cannot help (Redis refuses the
#: worker's credentials): the worker stops and says why.
FATAL = 3


@dataclass
class Slot:
    """One of a worker's concurrent runs: its name, and the GPU it hands out."""

    worker_id: str
    index: int
    gpu: str | None  # a CUDA_VISIBLE_DEVICES value; None: this slot has no GPU
    settings: QueueSettings
    catalog: Catalog
    #: The slot's Redis retry policy; its run processes hold a copy.
    reconnect: Reconnect | None = None
    #: What it offers a run (its worker's host, runtimes and labels, its own GPU): a run
    #: that requires more is given back to be placed again (see horse.py).
    offer: Offer | None = None

    @property
    def name(self) -> str:
        return f"{self.worker_id}/{self.index}"

    @property
    def gpu_label(self) -> str:
        return f"GPU {self.gpu}" if self.gpu is not None else "no GPU"


class SlotWorker(Worker):
    """rq's forking worker, with omnilab's rules for the edges of a run's life."""

    slot: Slot

    _spare: spare.Spare | None = None
    told_to_stop = False

    def say(self, message: str) -> None:
        _say(self.slot.worker_id, self.slot.index, message)

    # -- outages (see omnilab.queue.reconnect) ----------------------------------------

    def register_birth(self) -> None:
        """rq will not start under a name that Redis shows as live. A slot's name is its
        worker's id and its index, and the worker starts a slot only once the previous
        one has exited, so a live registration of this name is that one's, left behind
        (it was killed, or Redis restored it from its append-only file): end it the way
        rq ends its own, then register."""
        conn = self.connection
        if conn.exists(self.key) and not conn.hexists(self.key, "death"):
            previous = conn.hget(self.key, "pid")
            self.register_death()
            pid = f" (pid {int(previous)})" if previous else ""
            self.say(f"cleared the registration left in Redis by its previous process{pid}")
        super().register_birth()

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Told to stop: the run in progress finishes, and from now on nothing waits for
        Redis, here or in the run's process (told with SIGUSR1): what rq would still
        write there is shown only by rq's own tools, and expires by itself."""
        self.told_to_stop = True
        if self.slot.reconnect is not None:
            # The main thread's: rq's stop-job listener keeps listening (quietly) until
            # the teardown, for a cancellation that may still come.
            self.slot.reconnect.give_up(this_thread_only=True)
        if self.horse_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, signal.SIGUSR1)
        super().request_stop(signum, frame)

    @contextlib.contextmanager
    def _unless_stopping(self) -> Iterator[None]:
        """Redis errors go up as usual, except once the slot was told to stop."""
        try:
            yield
        except redis.RedisError:
            if not self.told_to_stop:
                raise

    # What rq does with Redis between a stop request and its teardown.

    def set_shutdown_requested_date(self) -> None:
        with self._unless_stopping():
            super().set_shutdown_requested_date()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        with self._unless_stopping():
            super().set_state(state, pipeline)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        with self._unless_stopping():
            super().heartbeat(timeout, pipeline)

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        with self._unless_stopping():
            super().maintain_heartbeats(job, execution)

    def monitor_work_horse(self, job: Job, queue: Queue, execution: Execution) -> None:
        with self._unless_stopping():
            super().monitor_work_horse(job, queue, execution)

    def run_maintenance_tasks(self) -> None:
        with self._unless_stopping():
            super().run_maintenance_tasks()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        # Whatever happened before (the first message, a spare that died), the next
        # message finds a horse ready.
        self._ensure_spare()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        """Hand the message to the spare instead of forking; fork as rq does when there
        is none, or it is gone. Then start the next spare while this run goes on."""
        ready, self._spare = self._spare, None
        execution = self.execution
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = job.id
        if ready is not None and execution is None:  # not rq's usual path: fork as it does
            ready.discard()
            ready = None
        if (
            ready is not None
            and execution is not None
            and ready.hand(spare.Handoff(job.id, queue.name, execution.id))
        ):
            self._horse_pid = ready.pid
            self.procline(f"Handed {job.id} to spare {ready.pid}")
        else:
            super().fork_work_horse(job, queue)
        self._ensure_spare()

    def _ensure_spare(self) -> None:
        if self._spare is not None and self._spare.alive():
            return
        # Pick up experiment files changed since the last run before the fork, so that
        # the spare starts from them (it looks again when its run comes).
        self.slot.catalog.refresh()
        self._spare = spare.start(self._prepare_spare, self._run_handed)

    def _prepare_spare(self) -> None:
        """In the spare: the run's own preparation, and a Redis connection of its own
        (the slot's are not shared across a fork) for rq's bookkeeping at the start."""
        horse.prepare()
        with contextlib.suppress(redis.RedisError):
            self.connection.ping()

    def _run_handed(self, handoff: spare.Handoff) -> None:
        """In the spare, once handed a message: become rq's work horse for it."""
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = handoff.job
        os.environ["RQ_EXECUTION_ID"] = handoff.execution
        job = self.job_class(handoff.job, connection=self.connection, serializer=self.serializer)
        execution = Execution(handoff.execution, job.id, connection=self.connection)
        with self.connection.pipeline(transaction=False) as pipe:  # one round trip
            pipe.hgetall(job.key)
            pipe.hgetall(execution.key)
            job_data, execution_data = pipe.execute()
        if not job_data or not execution_data:
            raise NoSuchJobError(f"message {handoff.job} is gone from Redis")
        job.restore(job_data)
        execution.restore(execution_data)
        queue = self.queue_class(
            handoff.queue,
            connection=self.connection,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )
        execution._job = job
        self.executions.clear()
        self.execution = execution
        self.main_work_horse(job, queue)

    def teardown(self) -> None:
        """Stopping: Redis is not waited for any more. What rq records here (this slot's
        end) is only shown by rq's tools, and expires on its own when Redis is away."""
        if self.slot.reconnect is not None:
            self.slot.reconnect.give_up()
        if self._spare is not None and not self.is_horse:
            self._spare.discard()
            self._spare = None
        listener: Any = self.pubsub_thread  # rq annotates it as always None
        if listener is not None:
            # rq unsubscribes, then stops its stop-job listener and waits for it: one
            # whose loop came round between the two waits (up to a minute) for the
            # subscription that will not come back. Told first, it ends on the reply.
            listener.stop(timeout=0)
        with contextlib.suppress(redis.RedisError, QueueFatal):
            super().teardown()

    def kill_horse(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """rq kills with SIGKILL; SIGTERM lets the runner tear the stack down and record
        the run (a cold shutdown still ends at once for the experiment itself)."""
        if self.horse_pid:  # rq would signal its own process group for pid 0
            super().kill_horse(sig)

    def handle_work_horse_killed(self, job: Job, retpid: Any, ret_val: Any, rusage: Any) -> None:
        """The horse died without finishing (killed, crashed): end the attempt."""
        if not job.args:
            return
        how = (
            f"killed by signal {signal.Signals(os.WTERMSIG(ret_val)).name}"
            if ret_val and os.WIFSIGNALED(ret_val)
            else f"exit status {os.WEXITSTATUS(ret_val) if ret_val else ret_val}"
        )
        reason = f"the process running it (pid {retpid}) died: {how}"
        try:
            with TrackingStore.open(self.slot.settings) as store:
                # Only the attempt of this message: a run given to another worker
                # meanwhile (this one was taken for dead) is that worker's.
                QueueStore(store).end_attempt(str(job.args[0]), reason, job=job.id)
        except Exception as exc:  # the sweepers will end it; say why this did not
            print(
                f"[{str(job.args[0])[:8]}] could not record that {reason}: {exc}", file=sys.stderr
            )


def _preload() -> None:
    """Do once, before the forks, what every run would otherwise do: imports, and
    reading package versions for the run records."""
    import platform

    import omnilab.runtimes.local.runtime
    import omnilab.services
    import omnilab.stack
    import omnilab.tracking.metrics  # noqa: F401
    from omnilab.environment import package_versions

    package_versions()
    platform.platform()  # cached by the platform module; costs a scan of the interpreter


def _say(worker_id: str, index: int, message: str) -> None:
    """One line on the worker's output, in one write: the slots share it."""
    with contextlib.suppress(OSError, ValueError):
        os.write(2, f"worker {worker_id}: slot {index}: {message}\n".encode(errors="replace"))


class _LastError(logging.Handler):
    """Keeps the exception that rq logs when an error ends its work loop (rq catches
    it, logs it and returns): the reason this slot ended."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.error = record.exc_info[1]


def _cause(error: BaseException | None) -> str:
    if error is None:
        return "rq's work loop ended"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omnilab.queue.slot")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--gpu", default=None)
    parser.add_argument("--queue", action="append", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--cause-fd", type=int, default=None)
    parser.add_argument("--offer", default=None, help="what the slot offers, as JSON")
    args = parser.parse_args(argv)
    die_with_parent(signal.SIGKILL, args.parent)
    # Until a run's process sets its own (see horse.py), the "stop waiting for Redis"
    # signal must not kill it: a forked process starts with its slot's dispositions.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if args.cause_fd is not None:
        os.set_inheritable(args.cause_fd, False)  # not for what runs exec

    def ended(error: BaseException | None, status: int) -> int:
        """Say why the slot ends, to the worker's output and to the worker."""
        cause = _cause(error)
        _say(args.worker_id, args.index, f"ended: {cause}")
        if args.cause_fd is not None:
            with contextlib.suppress(OSError):
                os.write(args.cause_fd, (cause + "\n").encode()[:4096])
        return status

    settings = get_queue_settings()
    catalog = Catalog(settings.experiments_dir)
    reconnect = Reconnect(
        f"Redis at {redact_url(settings.redis_url)}",
        report=lambda message: _say(args.worker_id, args.index, message),
    )
    offer = Offer.model_validate_json(args.offer) if args.offer else None
    slot = Slot(args.worker_id, args.index, args.gpu, settings, catalog, reconnect, offer)
    horse.configure(slot)
    _preload()
    last_error = _LastError()
    logging.getLogger("rq.worker").addHandler(last_error)
    try:
        broker = Broker(settings.redis_url, settings.queue, retry=reconnect)
        worker = SlotWorker(
            [Queue(name, connection=broker.redis) for name in args.queue],
            connection=broker.redis,
            name=f"{args.worker_id}.{args.index}",
        )
        worker.slot = slot
        # Objects made so far live as long as the slot: move them out of the collector's
        # sight, so that a horse's collections do not touch (and copy) every page it
        # shares with the slot after the fork.
        gc.freeze()
        worker.work(logging_level="WARNING")
    except QueueFatal as exc:
        return ended(exc, FATAL)
    except Exception as exc:
        traceback.print_exc()
        return ended(exc, 1)
    if worker.told_to_stop:
        return 0
    # rq's loop ended on an error it caught (and logged, traceback included).
    return ended(last_error.error, FATAL if isinstance(last_error.error, QueueFatal) else 1)


if __name__ == "__main__":
    sys.exit(main())
