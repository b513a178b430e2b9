"""Work that must happen on the host that holds the data: each worker host's task lane.

A run's kept stack data is a folder on the host that ran it; a promotion reopens that
stack, so it runs there, and so does discarding the data. A rollback acts on production
as the promoting host configured it (``localhost`` on one host is not on another), so it
runs where its promotion ran. Every ``omnilab worker`` therefore listens, besides the
run queues, on its host's **task lane**, the rq queue ``{queue}@{host}/tasks``
(:func:`lane_name`), in a process of its own (:mod:`omnilab.queue.lane`): a promotion is
never stuck behind hours-long runs.

Whoever is asked elsewhere (the API, the web UI, ``omnilab promote`` on another host)
hands the task over (:func:`hand_over`) and waits for its outcome, which it reports as
if it had done the work itself: the same result or error (a conflict, a refusal, a
failed copy, each with its plan). The promotion is recorded in the tracking store as
any other (its ``host`` is the one that carried it out).

The exchange, on the queue's Redis (messages are JSON, :class:`rq.serializers.JSONSerializer`):

- the task: ``{"id", "kind", "args", "host", "asked_by"}``, message id ``task-<id>``;
- ``omnilab:task:<id>:state``: set once, by whoever comes first (``SET NX``): the
  worker that starts the task (``started <worker>``) or the caller that stopped waiting
  for it to start (``abandoned``). A task is never started after its caller gave up on
  it, with no clock shared between hosts;
- ``omnilab:task:<id>:reply``: a list the worker pushes the outcome on (JSON), that the
  caller pops with a blocking wait; both keys expire.

The caller waits ``OMNILAB_HOST_TASK_START_TIMEOUT`` seconds for the task to start
(another task may be running there), then ``OMNILAB_HOST_TASK_TIMEOUT`` seconds for its
outcome; it checks the host's heartbeat meanwhile, so that a host lost mid-task is said
within seconds rather than at the timeout. A message that left the lane without the task
starting is sent again (``OMNILAB_RESEND_AFTER``, at least a second, later): a host
killed outright leaves a blocked read of its lane open on Redis's side, which takes the
next message and never runs it (see :meth:`_Waiter._lost`).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import get_current_job
from rq.serializers import JSONSerializer

from omnilab.errors import OmnilabError, RunNotFound, UsageError
from omnilab.host import host_name
from omnilab.progress import Reporter
from omnilab.queue.broker import Broker, QueueUnavailable
from omnilab.queue.settings import QueueSettings
from omnilab.services.promotable import (
    PromotionConflict,
    PromotionError,
    PromotionFailed,
    PromotionRefused,
)
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import WorkerStore

#: The only function a task lane runs (see :class:`omnilab.queue.lane.LaneWorker`).
TASK = "omnilab.queue.hosttasks.perform"
KINDS = ("promote", "rollback", "discard")
#: How long the keys of a task stay in Redis: long enough for any caller still waiting.
STATE_TTL_S = 24 * 3600
REPLY_TTL_S = 3600

#: Errors that travel back as themselves; any other is a :class:`HostTaskError`.
_ERRORS: dict[str, type[OmnilabError]] = {
    cls.__name__: cls
    for cls in (
        OmnilabError,
        UsageError,
        RunNotFound,
        PromotionError,
        PromotionConflict,
        PromotionFailed,
        PromotionRefused,
    )
}


def lane_name(queue: str, host: str) -> str:
    """The task lane of ``host``: beside the run queues ``queue`` and ``queue-gpu``."""
    return f"{queue}@{host}/tasks"


def _state_key(task_id: str) -> str:
    return f"omnilab:task:{task_id}:state"


def _reply_key(task_id: str) -> str:
    return f"omnilab:task:{task_id}:reply"


class HostUnavailable(OmnilabError):
    """The host that holds the data cannot take the task now: no live worker there, the
    queue's Redis cannot be reached, or the task was not started in time. Nothing was
    done. The API answers 503."""

    status = 503


class HostTimeout(HostUnavailable):
    """The host took the task but gave no outcome in time: it may still be at it. The
    API answers 504."""

    status = 504


class HostTaskError(OmnilabError):
    """The task failed on its host in a way omnilab did not foresee (a bug, a crash of
    the process doing it): the API answers 502."""

    status = 502


# -- on the host that holds the data --------------------------------------------------


#: Set by the lane process (:mod:`omnilab.queue.lane`) before it takes tasks.
_settings: QueueSettings | None = None
_worker: str = ""


def configure(settings: QueueSettings, worker: str) -> None:
    global _settings, _worker
    _settings, _worker = settings, worker


class _TaskReporter(Reporter):
    """The task's progress lines on the worker's output, each naming the task."""

    def __init__(self, prefix: str) -> None:
        super().__init__(sys.stderr)
        self.prefix = prefix

    def note(self, message: str) -> None:
        super().note(f"{self.prefix}{message}")


def perform(task: dict[str, Any]) -> str:
    """What the lane's work horse runs for one task; its outcome goes to the caller."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("omnilab.queue.hosttasks.perform runs in a worker's task lane")
    conn = job.connection
    task_id = str(task["id"])
    worker = _worker or host_name()
    if not conn.set(_state_key(task_id), f"started {worker}", nx=True, ex=STATE_TTL_S):
        return "abandoned by its caller before it started"
    reporter = _TaskReporter(f"worker {worker}: task {task_id[:8]} ({task.get('kind')}): ")
    reporter.note(f"asked by {task.get('asked_by') or 'someone'}")
    try:
        reply: dict[str, Any] = {"ok": True, "value": _carry_out(task, reporter)}
    except OmnilabError as exc:
        reply = {"ok": False, "error": _error_of(exc)}
    except Exception as exc:
        reply = {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}}
    except BaseException as exc:  # stopped (SIGTERM, Ctrl-C): the caller must hear it
        message = (
            f"interrupted on host {host_name()} ({type(exc).__name__}): its worker is "
            "stopping; an interrupted promotion is finished or undone by the next sweep"
        )
        send_reply(conn, task_id, {"ok": False, "error": {"type": "", "message": message}})
        raise
    send_reply(conn, task_id, reply)
    outcome = "done" if reply["ok"] else f"refused or failed: {reply['error']['message']}"
    reporter.note(outcome.splitlines()[0] if outcome else outcome)
    return "done" if reply["ok"] else "failed"


def send_reply(conn: redis.Redis, task_id: str, reply: dict[str, Any]) -> None:
    with conn.pipeline() as pipe:
        pipe.rpush(_reply_key(task_id), json.dumps(reply, default=str))
        pipe.expire(_reply_key(task_id), REPLY_TTL_S)
        pipe.execute()


def _error_of(exc: OmnilabError) -> dict[str, Any]:
    result = getattr(exc, "result", None)
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "result": result.model_dump(mode="json") if result is not None else None,
    }


def _carry_out(task: dict[str, Any], reporter: Reporter) -> Any:
    """The task, as the command would do it here; its JSON-able value."""
    from omnilab.promote import promote, retention, rollback

    settings = _settings
    if settings is None:
        from omnilab.queue.settings import get_queue_settings

        settings = get_queue_settings()
    kind, args = task["kind"], task["args"]
    if kind == "promote":
        return promote(
            args["run"],
            dry_run=bool(args.get("dry_run")),
            on_conflict=str(args.get("on_conflict", "fail")),
            actor=args.get("actor"),
            settings=settings,
            reporter=reporter,
        ).model_dump(mode="json")
    if kind == "rollback":
        return rollback(
            args["promotion"],
            dry_run=bool(args.get("dry_run")),
            force=bool(args.get("force")),
            actor=args.get("actor"),
            settings=settings,
            reporter=reporter,
        ).model_dump(mode="json")
    if kind == "discard":
        with TrackingStore.open(settings) as store:
            return retention.discard(store, args["run"], reporter)
    raise UsageError(f"unknown host task {kind!r}: this worker knows {', '.join(KINDS)}")


# -- on the host that was asked -----------------------------------------------------------


@dataclass
class HandOver:
    """What is handed over, and how to say it: ``situation`` says where the data is
    ("run 3f2a1b2c's kept data is on host b"), ``command`` what a user would run on that
    host instead."""

    host: str
    kind: str
    args: dict[str, Any]
    situation: str
    command: str
    #: Rebuilds the outcome's ``result`` (the plan) carried by an error, as the local
    #: call attaches it.
    result_model: Callable[[dict[str, Any]], Any] | None = None


def hand_over(settings: QueueSettings, work: HandOver, reporter: Reporter) -> Any:
    """Give ``work`` to its host's task lane and wait for its outcome: the value the
    local call would return (as JSON), or the error it would raise."""
    lane = lane_name(settings.queue, work.host)
    _check_live(settings, work, lane)
    broker = Broker(settings.redis_url, settings.queue)
    try:
        try:
            broker.ping()
        except QueueUnavailable as exc:
            raise HostUnavailable(
                f"{work.situation}; handing the {work.kind} to it needs "
                f"the queue's Redis (REDIS_URL): {exc}"
            ) from None
        task_id = uuid.uuid4().hex
        task = {
            "id": task_id,
            "kind": work.kind,
            "args": work.args,
            "host": work.host,
            "asked_by": host_name(),
        }
        try:
            Queue(lane, connection=broker.redis, serializer=JSONSerializer).enqueue_call(
                TASK,
                args=(task,),
                job_id=f"task-{task_id}",
                timeout=-1,  # a promotion takes as long as its copy; the caller's timeout
                result_ttl=0,
                failure_ttl=REPLY_TTL_S,
                description=f"omnilab {work.kind} for {host_name()}",
            )
        except redis.RedisError as exc:
            raise HostUnavailable(
                f"{work.situation}; could not hand the {work.kind} to it: {broker.unreachable(exc)}"
            ) from None
        reporter.note(
            f"{work.situation}: {work.kind} handed to its worker (queue {lane}); waiting for it"
        )
        reply = _Waiter(settings, work, lane, broker.redis, task_id).wait()
    finally:
        broker.close()
    return _outcome(work, reply)


def _check_live(settings: QueueSettings, work: HandOver, lane: str) -> None:
    with TrackingStore.open(settings) as store:
        found = WorkerStore(store).on_host(work.host, lane, settings.worker_ttl)
    if found.with_lane:
        return
    if found.live:
        why = "whose workers take no host tasks (an older omnilab?)"
    elif found.last_heartbeat_s is None:
        why = "where no worker ever ran"
    else:
        why = f"which has no live worker (last heartbeat {_ago(found.last_heartbeat_s)})"
    raise HostUnavailable(
        f"{work.situation}, {why}: start `omnilab worker` on "
        f"{work.host}, or run `{work.command}` there"
    )


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


class _Waiter:
    """The caller's side of one task: its start, its outcome, and the host's heartbeat
    in the meantime."""

    #: Seconds of one blocking wait for the reply, between two looks at the rest.
    SLICE_S = 1

    def __init__(
        self,
        settings: QueueSettings,
        work: HandOver,
        lane: str,
        conn: redis.Redis,
        task_id: str,
    ) -> None:
        self.settings = settings
        self.work = work
        self.lane = lane
        self.conn = conn
        self.task_id = task_id
        self.started = False
        #: Since when the message has been out of the lane's queue with the task not
        #: started (monotonic), and how often it was sent again.
        self.gone_since: float | None = None
        self.sent_again = 0

    def wait(self) -> dict[str, Any]:
        work = self.work
        start_by = time.monotonic() + self.settings.host_task_start_timeout
        end_by = start_by + self.settings.host_task_timeout
        check_every = max(1.0, min(5.0, self.settings.worker_ttl / 3))
        next_check = time.monotonic() + check_every
        try:
            while True:
                reply = self._reply()
                if reply is not None:
                    return reply
                now = time.monotonic()
                if not self.started:
                    self.started = self._has_started()
                    if self.started:
                        end_by = now + self.settings.host_task_timeout
                    elif self._lost(now):
                        self._send_again()
                    elif now > start_by and self._abandon():
                        raise HostUnavailable(
                            f"{work.situation}, whose worker did not take the "
                            f"{work.kind} within "
                            f"{self.settings.host_task_start_timeout:g} s (busy with another "
                            "task, or stopping); nothing was done: try again"
                        )
                elif now > end_by:
                    raise HostTimeout(
                        f"host {work.host} took the {work.kind} but gave no outcome within "
                        f"{self.settings.host_task_timeout:g} s; it may still be at it: see "
                        "`omnilab promotions ls`"
                    )
                if now >= next_check:
                    next_check = now + check_every
                    self._check_still_live()
        except redis.RedisError as exc:
            self._give_up()
            raise HostUnavailable(
                f"lost the queue's Redis while host {work.host} had the {work.kind}: "
                f"{_first_line(exc)}; "
                + (
                    "it may go on there: see `omnilab promotions ls`"
                    if self.started
                    else "it may not have started"
                )
            ) from None
        except BaseException:
            self._give_up()
            raise

    def _reply(self) -> dict[str, Any] | None:
        popped = self.conn.blpop([_reply_key(self.task_id)], timeout=self.SLICE_S)
        if popped is None:
            return None
        reply: dict[str, Any] = json.loads(popped[1])
        return reply

    def _lost(self, now: float) -> bool:
        """Whether the task's message left the lane's queue for a while without the task
        starting: a connection that will never run it took it. A worker host killed
        outright leaves its lane's blocked ``BLMOVE`` open on the Redis side until TCP
        gives up (minutes), and Redis serves the oldest blocked client first: the first
        task handed to the host after its restart goes to the dead lane, into rq's
        intermediate list, where rq's clean-up later fails it. A live lane starts a task
        within a second of taking it."""
        try:
            position = self._queue().get_job_position(self._job_id)
        except redis.ResponseError:  # no LPOS (Redis < 6.0.6): rq reads the whole list
            position = None
        if position is not None:
            self.gone_since = None
            return False
        if self.gone_since is None:
            self.gone_since = now
        return now - self.gone_since >= max(1.0, self.settings.resend_after)

    def _send_again(self) -> None:
        """Put the message back at the front of the lane; were the first delivery alive
        after all, the task's state key (``SET NX``) lets only one of the two run it."""
        queue = self._queue()
        with self.conn.pipeline() as pipe:
            pipe.lrem(IntermediateQueue.get_intermediate_queue_key(queue.key), 0, self._job_id)
            queue.push_job_id(self._job_id, pipeline=pipe, at_front=True)
            pipe.execute()
        self.gone_since = None
        self.sent_again += 1

    def _queue(self) -> Queue:
        return Queue(self.lane, connection=self.conn, serializer=JSONSerializer)

    @property
    def _job_id(self) -> str:
        return f"task-{self.task_id}"

    def _has_started(self) -> bool:
        state: Any = self.conn.get(_state_key(self.task_id))
        text = state.decode() if isinstance(state, bytes) else str(state or "")
        return text.startswith("started")

    def _abandon(self) -> bool:
        """Claim the task for nobody; False when its worker started it just now."""
        abandoned = bool(
            self.conn.set(_state_key(self.task_id), "abandoned", nx=True, ex=STATE_TTL_S)
        )
        if abandoned:
            with contextlib.suppress(redis.RedisError):
                queue = self._queue()
                queue.remove(self._job_id)
                self.conn.lrem(
                    IntermediateQueue.get_intermediate_queue_key(queue.key), 0, self._job_id
                )
        else:
            self.started = True
        return abandoned

    def _give_up(self) -> None:
        """The caller stops waiting (interrupted, Redis lost): a task not started yet
        never will be."""
        if not self.started:
            with contextlib.suppress(redis.RedisError):
                self._abandon()

    def _check_still_live(self) -> None:
        work = self.work
        with TrackingStore.open(self.settings) as store:
            found = WorkerStore(store).on_host(work.host, self.lane, self.settings.worker_ttl)
        if found.with_lane:
            return
        if not self.started and self._abandon():
            _check_live(self.settings, work, self.lane)  # raises, naming the host
        raise HostUnavailable(
            f"host {work.host} stopped answering while it had the {work.kind} (no heartbeat "
            f"for {self.settings.worker_ttl:g} s); its record says how far it got (`omnilab "
            "promotions ls`), and an interrupted promotion is finished or undone by the "
            "next sweep"
        )


def _outcome(work: HandOver, reply: dict[str, Any]) -> Any:
    if reply.get("ok"):
        return reply.get("value")
    error = reply.get("error") or {}
    cls = _ERRORS.get(str(error.get("type")))
    message = str(error.get("message") or "no reason given")
    if cls is None:
        kind = f"{error['type']}: " if error.get("type") else ""
        raise HostTaskError(f"the {work.kind} failed on host {work.host}: {kind}{message}")
    exc = cls(message)
    if error.get("result") is not None and work.result_model is not None:
        exc.result = work.result_model(error["result"])  # type: ignore[attr-defined]
    raise exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
