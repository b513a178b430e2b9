"""A worker's task lane: the process that does this host's promotions, rollbacks and
discards handed over from elsewhere (see :mod:`omnilab.queue.hosttasks`).

One per ``omnilab worker``, beside its slots, started and restarted by the supervisor
as they are (``python -m omnilab.queue.lane``), so that a task never waits for a run to
end. It is an rq worker on the lane ``{queue}@{host}/tasks`` only, forking a work horse
per task as rq does (a promotion handles SIGTERM in its main thread, and a crash takes
the horse, not the lane), with the slots' rules for outages of Redis
(:class:`omnilab.queue.slot.SlotWorker`) and none of their spares: tasks are rare.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import traceback
from typing import Any

from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer

from omnilab.catalog import Catalog
from omnilab.host import host_name
from omnilab.queue import hosttasks
from omnilab.queue.broker import Broker
from omnilab.queue.lifeline import die_with_parent
from omnilab.queue.reconnect import QueueFatal, Reconnect
from omnilab.queue.settings import get_queue_settings
from omnilab.queue.slot import FATAL, Slot, SlotWorker, _cause, _LastError
from omnilab.redact import redact_url

#: The lane's index among its worker's processes, in what it says ("slot tasks").
LANE = "tasks"


class LaneWorker(SlotWorker):
    """rq's forking worker for host tasks: a slot's outage rules, rq's own forks."""

    def say(self, message: str) -> None:
        _say(self.slot.worker_id, message)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        return Worker.dequeue_job_and_maintain_ttl(self, timeout, max_idle_time)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        Worker.fork_work_horse(self, job, queue)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """Only omnilab's host tasks: whoever can write to Redis must not get this host
        to import and call any function it names."""
        if job.func_name != hosttasks.TASK:
            self.say(f"refused message {job.id}: it names {job.func_name!r}, not a host task")
            return False
        return bool(super().perform_job(job, queue, execution))

    def handle_work_horse_killed(self, job: Job, retpid: Any, ret_val: Any, rusage: Any) -> None:
        """The process doing a task died: its caller hears it now, not at its timeout."""
        if job.func_name != hosttasks.TASK or not job.args:
            return
        task = job.args[0]
        how = (
            f"killed by signal {signal.Signals(os.WTERMSIG(ret_val)).name}"
            if ret_val and os.WIFSIGNALED(ret_val)
            else f"exit status {os.WEXITSTATUS(ret_val) if ret_val else ret_val}"
        )
        message = (
            f"the process doing it on host {host_name()} (pid {retpid}) died: {how}; an "
            "interrupted promotion is finished or undone by the next sweep"
        )
        with contextlib.suppress(Exception):
            hosttasks.send_reply(
                self.connection,
                str(task["id"]),
                {"ok": False, "error": {"type": "", "message": message}},
            )


def _preload() -> None:
    """Imports every task needs, once, before the forks."""
    import omnilab.promote
    import omnilab.services
    import omnilab.stack  # noqa: F401


def _say(worker_id: str, message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.write(2, f"worker {worker_id}: host tasks: {message}\n".encode(errors="replace"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omnilab.queue.lane")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--cause-fd", type=int, default=None)
    args = parser.parse_args(argv)
    die_with_parent(signal.SIGKILL, args.parent)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # see slot.py: "stop waiting for Redis"
    if args.cause_fd is not None:
        os.set_inheritable(args.cause_fd, False)

    def ended(error: BaseException | None, status: int) -> int:
        cause = _cause(error)
        _say(args.worker_id, f"ended: {cause}")
        if args.cause_fd is not None:
            with contextlib.suppress(OSError):
                os.write(args.cause_fd, (cause + "\n").encode()[:4096])
        return status

    settings = get_queue_settings()
    hosttasks.configure(settings, args.worker_id)
    reconnect = Reconnect(
        f"Redis at {redact_url(settings.redis_url)}",
        report=lambda message: _say(args.worker_id, message),
    )
    # A slot's description, for the outage rules it shares with the slots; no GPU, and
    # no experiments (tasks run none).
    slot = Slot(args.worker_id, -1, None, settings, Catalog(settings.experiments_dir), reconnect)
    _preload()
    last_error = _LastError()
    logging.getLogger("rq.worker").addHandler(last_error)
    try:
        broker = Broker(settings.redis_url, settings.queue, retry=reconnect)
        worker = LaneWorker(
            [Queue(args.queue, connection=broker.redis, serializer=JSONSerializer)],
            connection=broker.redis,
            name=f"{args.worker_id}.{LANE}",
            serializer=JSONSerializer,
        )
        worker.slot = slot
        worker.work(logging_level="WARNING")
    except QueueFatal as exc:
        return ended(exc, FATAL)
    except Exception as exc:
        traceback.print_exc()
        return ended(exc, 1)
    if worker.told_to_stop:
        return 0
    return ended(last_error.error, FATAL if isinstance(last_error.error, QueueFatal) else 1)


if __name__ == "__main__":
    sys.exit(main())
