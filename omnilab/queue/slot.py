"""A worker slot: one rq worker process, running one run at a time in a forked horse.

``omnilab worker`` starts one slot per concurrent run (``python -m omnilab.queue.slot``);
a slot that owns a GPU listens to the GPU queue first, and every run it starts sees only
that GPU (``CUDA_VISIBLE_DEVICES``), so two runs never share one.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from typing import Any

from rq import Queue, Worker
from rq.job import Job

from omnilab.catalog import Catalog
from omnilab.queue import horse
from omnilab.queue.broker import Broker
from omnilab.queue.lifeline import die_with_parent
from omnilab.queue.settings import get_queue_settings
from omnilab.tracking import queued_runs
from omnilab.tracking.store import TrackingStore


class SlotWorker(Worker):
    """rq's forking worker, with omnilab's rules for the edges of a run's life."""

    slot: horse.Slot

    def execute_job(self, job: Job, queue: Queue) -> None:
        # Pick up experiment files changed since the last run, once, before the fork.
        self.slot.catalog.refresh()
        super().execute_job(job, queue)

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
                queued_runs.end_attempt(store.conn, str(job.args[0]), reason)
        except Exception as exc:  # the sweepers will end it; say why this did not
            print(
                f"[{str(job.args[0])[:8]}] could not record that {reason}: {exc}", file=sys.stderr
            )


def _preload() -> None:
    """Do once, before the forks, what every run would otherwise do: imports, and
    reading package versions for the run records."""
    import platform

    import omnilab.runtimes.local
    import omnilab.services
    import omnilab.stack
    import omnilab.tracking.metrics  # noqa: F401
    from omnilab.environment import package_versions

    package_versions()
    platform.platform()  # cached by the platform module; costs a scan of the interpreter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m omnilab.queue.slot")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--gpu", default=None)
    parser.add_argument("--queue", action="append", required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(signal.SIGKILL, args.parent)

    settings = get_queue_settings()
    catalog = Catalog(settings.experiments_dir)
    slot = horse.Slot(args.worker_id, args.index, args.gpu, settings, catalog)
    horse.configure(slot)
    _preload()
    broker = Broker(settings.redis_url, settings.queue)
    worker = SlotWorker(
        [Queue(name, connection=broker.redis) for name in args.queue],
        connection=broker.redis,
        name=f"{args.worker_id}.{args.index}",
    )
    worker.slot = slot
    # Objects made so far live as long as the slot: move them out of the collector's
    # sight, so that a horse's collections do not touch (and copy) every page it shares
    # with the slot after the fork.
    gc.freeze()
    worker.work(logging_level="WARNING")
    return 0


if __name__ == "__main__":
    sys.exit(main())
