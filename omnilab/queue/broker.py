"""Messages on Redis, through rq: "please run this run".

A message carries a run id and nothing else; the run's record in the tracking store says
what to run. Losing a message (Redis restarted, the API died before sending it) is
repaired by :mod:`omnilab.queue.reconcile`; receiving one twice is harmless because a
worker must claim the run in the store first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from redis.retry import Retry
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from omnilab.errors import OmnilabError
from omnilab.redact import redact_text, redact_url
from omnilab.tracking.queued_runs import job_id

#: The function a worker's rq work horse calls with the run id.
TASK = "omnilab.queue.horse.execute"
#: Messages of finished deliveries are dropped at once; failed ones kept a day for
#: inspection with rq's own tools.
FAILURE_TTL_S = 24 * 3600
#: Messages still on their way to a worker. A "started" one is not counted: once a
#: horse has it, the run is claimed within milliseconds, so a run still queued in the
#: store with a started message lost its attempt (the worker died) and needs a new one.
_WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


class QueueUnavailable(OmnilabError):
    """Redis (``REDIS_URL``) cannot be reached."""


class Broker:
    """The queues of one omnilab deployment on one Redis."""

    def __init__(self, url: str, queue: str, *, retry: Retry | None = None) -> None:
        """``retry``: the client's retry policy; a worker's slots wait out outages
        (:class:`omnilab.queue.reconnect.Reconnect`), the API and sweeps fail fast."""
        self.url = url
        self.queue = queue
        self._queues: dict[str, Queue] = {}
        try:
            options: dict[str, Any] = {"retry": retry} if retry is not None else {}
            self.redis = redis.Redis.from_url(
                url,
                socket_connect_timeout=2,
                socket_timeout=10,
                health_check_interval=30,
                **options,
            )
        except ValueError as exc:
            raise QueueUnavailable(
                f"REDIS_URL {redact_url(url)} is not a Redis URL: {redact_text(str(exc), url)}"
            ) from None

    def unreachable(self, exc: BaseException) -> QueueUnavailable:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return QueueUnavailable(
            f"cannot reach Redis at {redact_url(self.url)}: {redact_text(reason, self.url)}"
        )

    def ping(self) -> None:
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise self.unreachable(exc) from None

    def server_id(self) -> str:
        """Redis's run id: it changes when the server restarts (and forgets what it held,
        unless it persists its data)."""
        try:
            return str(self.redis.info("server").get("run_id", ""))
        except redis.RedisError as exc:
            raise self.unreachable(exc) from None

    def _queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis)
        return self._queues[name]

    def send(self, run_id: str, queue: str, delivery: int = 0) -> None:
        """Put one message for ``run_id`` on ``queue``; QueueUnavailable if Redis is not there."""
        self.send_many([(run_id, queue, delivery)])

    def send_many(self, messages: Iterable[tuple[str, str, int]]) -> None:
        """Messages (run id, queue, delivery) in one round trip to Redis."""
        by_queue: dict[str, list[Any]] = {}
        for run_id, queue, delivery in messages:
            by_queue.setdefault(queue, []).append(
                Queue.prepare_data(
                    TASK,
                    (run_id,),
                    job_id=job_id(run_id, delivery),
                    timeout=-1,  # runs take as long as they take; cancel stops them
                    result_ttl=0,
                    failure_ttl=FAILURE_TTL_S,
                    description=f"omnilab run {run_id}",
                )
            )
        if not by_queue:
            return
        try:
            with self.redis.pipeline() as pipe:
                for queue, jobs in by_queue.items():
                    self._queue(queue).enqueue_many(jobs, pipeline=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            raise self.unreachable(exc) from None

    def waiting(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` whose message still waits for a worker.

        A queued message counts only while it is in its queue's list. A worker host
        killed outright leaves its slots' blocked reads (``BLPOP``) open on Redis's side
        until TCP gives up, minutes later, and Redis hands the next message to the oldest
        of them: gone from the list, never started, its status still "queued". Such a
        message is lost, and the run gets a new one; a live slot that took it an instant
        ago claims the run first, so the second message finds it taken."""
        ids = list(job_ids)
        if not ids:
            return set()
        try:
            jobs = [j for j in Job.fetch_many(ids, connection=self.redis) if j is not None]
            status = {j.id: j.get_status(refresh=False) for j in jobs}
            listed = self._listed({j.origin for j in jobs if status[j.id] == JobStatus.QUEUED})
        except redis.RedisError as exc:
            raise self.unreachable(exc) from None
        return {
            i for i, s in status.items() if s in _WAITING and (s != JobStatus.QUEUED or i in listed)
        }

    def _listed(self, queues: Iterable[str]) -> set[str]:
        """The message ids in these queues' lists (one read of each list)."""
        names = sorted(queues)
        if not names:
            return set()
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.lrange(self._queue(name).key, 0, -1)
            lists = pipe.execute()
        return {i.decode() if isinstance(i, bytes) else str(i) for ids in lists for i in ids}

    def stop(self, job: str) -> bool:
        """Tell the worker running message ``job`` to stop its horse (rq's stop-job
        command; omnilab's slots send SIGTERM, so the run tears its stack down). False
        when no worker runs it now."""
        try:
            send_stop_job_command(self.redis, job)
        except (InvalidJobOperation, NoSuchJobError):
            return False
        except redis.RedisError as exc:
            raise self.unreachable(exc) from None
        return True

    def close(self) -> None:
        self.redis.close()
