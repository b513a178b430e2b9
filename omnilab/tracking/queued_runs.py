"""Runs that come through the queue: submitted, claimed, retried, cancelled.

The run's row in ``omnilab.runs`` stays the one source of truth for its status;
``omnilab.run_queue`` holds what only queued runs have (attempts, deliveries, the worker,
a cancellation request). Every transition is a single conditional statement or a short
transaction that locks the run's row first, so workers, the API and the sweepers can race
without a run being started twice, lost, or left "running".
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from omnilab.host import host_name
from omnilab.tracking.base import AsyncStore, Store
from omnilab.tracking.records import RUN_COLUMNS, RunRecord


class QueueInfo(BaseModel):
    """What the queue knows of a run beyond its record."""

    queue: str
    attempt: int
    max_attempts: int
    delivery: int
    queued_at: datetime
    worker: str | None = None
    gpu: str | None = None
    #: The worker host it was placed on (queue ``{queue}@{host}``); None: a shared queue.
    host: str | None = None
    submitted_by: str | None = None
    cancel_requested_at: datetime | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True)
class Placed:
    """A queued run with requirements, as the reconciler places it."""

    run_id: str
    requires: dict[str, Any]
    waiting: str | None
    queue: str
    host: str | None


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one attempt of a run."""

    run_id: str
    experiment: str
    params: dict[str, Any]
    attempt: int
    max_attempts: int
    #: What the run requires of its worker (None: nothing in particular).
    requires: dict[str, Any] | None = None
    #: The experiment file's hash it was queued against (None: not known).
    code_sha256: str | None = None


#: A condition on ``omnilab.runs`` (as ``id``) with two parameters, both the attempt or
#: both None: none, or that this attempt is still the run's current one.
_CURRENT_ATTEMPT = (
    " AND (%s::int IS NULL OR EXISTS (SELECT 1 FROM omnilab.run_queue q "
    "WHERE q.run_id = omnilab.runs.id AND q.attempt = %s))"
)

#: The sweepers' advisory lock (see :meth:`QueueStore.sweep_lock`).
_SWEEP_LOCK_KEY = 0x6F6D6E71  # "omnq"


def job_id(run_id: str, delivery: int) -> str:
    """The queue message's id: one per delivery, so a re-sent message never collides with
    what is left in Redis of an earlier one."""
    return run_id if delivery == 0 else f"{run_id}-{delivery}"


_SUBMIT = """
    WITH run AS (
        INSERT INTO omnilab.runs
            (id, experiment, source, status, params, owner, name, tags, created_at,
             requires, code_sha256, waiting)
        VALUES (%(id)s, %(experiment)s, %(source)s, 'queued', %(params)s, %(owner)s,
                %(name)s, %(tags)s, now(), %(requires)s, %(code_sha256)s, %(waiting)s)
        RETURNING id
    )
    INSERT INTO omnilab.run_queue
        (run_id, queue, max_attempts, submitted_by, idempotency_key, host)
    SELECT id, %(queue)s, %(max_attempts)s, %(submitted_by)s, %(key)s, %(host)s FROM run
    RETURNING queued_at
"""


def _submit_args(
    record: RunRecord,
    queue: str,
    max_attempts: int,
    submitted_by: str | None,
    idempotency_key: str | None,
    host: str | None,
) -> dict[str, Any]:
    return {
        "requires": Jsonb(record.requires) if record.requires is not None else None,
        "code_sha256": record.code_sha256,
        "waiting": record.waiting,
        "host": host,
        "id": record.id,
        "experiment": record.experiment,
        "source": record.source,
        "params": Jsonb(record.params),
        "owner": record.owner,
        "name": record.name,
        "tags": list(record.tags),
        "queue": queue,
        "max_attempts": max_attempts,
        "submitted_by": submitted_by,
        "key": idempotency_key,
    }


def _submitted(record: RunRecord, row: Any) -> RunRecord:
    # now() is the transaction's start: the same instant as the run's created_at.
    return record.model_copy(update={"created_at": row[0] if row else None})


@dataclass(frozen=True)
class NewRun:
    """One run to record as queued, for :meth:`AsyncQueueStore.submit_many`."""

    id: str
    experiment: str
    source: str | None
    params: dict[str, Any]  # JSON values, already checked by jsonable_params
    owner: str | None
    queue: str
    max_attempts: int
    submitted_by: str | None
    name: str | None = None
    tags: tuple[str, ...] = ()
    requires: dict[str, Any] | None = None
    code_sha256: str | None = None
    #: Why no worker can take it now (it is then recorded but not sent).
    waiting: str | None = None
    #: The worker host it is placed on; None: the shared queue.
    host: str | None = None


#: Many runs in one statement, passed as one JSON array of rows: the statement's text
#: and its one parameter do not depend on how many runs there are (PostgreSQL plans it
#: once), and the client encodes one string instead of a value per column and row.
_SUBMIT_MANY = """
    WITH new AS (
        SELECT * FROM jsonb_to_recordset(%s::jsonb) AS t(
            id text, experiment text, source text, params jsonb, owner text,
            queue text, max_attempts int, submitted_by text, name text, tags jsonb,
            requires jsonb, code_sha256 text, waiting text, host text
        )
    ), run AS (
        INSERT INTO omnilab.runs
            (id, experiment, source, status, params, owner, name, tags, created_at,
             requires, code_sha256, waiting)
        SELECT id, experiment, source, 'queued', params, owner, name,
               ARRAY(SELECT jsonb_array_elements_text(tags)), now(),
               requires, code_sha256, waiting FROM new
        RETURNING id
    )
    INSERT INTO omnilab.run_queue (run_id, queue, max_attempts, submitted_by, host)
    SELECT new.id, new.queue, new.max_attempts, new.submitted_by, new.host
      FROM new JOIN run USING (id)
    RETURNING queued_at
"""


class QueueStore(Store):
    """Queued runs: submitted, claimed, retried, cancelled (``omnilab.run_queue``, and the
    run's row in ``omnilab.runs`` for its status)."""

    @contextlib.contextmanager
    def sweep_lock(self) -> Iterator[bool]:
        """Hold the sweepers' lock while it is free; yields whether this one got it. The
        API and every worker sweep (:mod:`omnilab.queue.reconcile`): one at a time."""
        row = self._execute("SELECT pg_try_advisory_lock(%s)", (_SWEEP_LOCK_KEY,)).fetchone()
        if not row or not row[0]:
            yield False
            return
        try:
            yield True
        finally:
            self._execute("SELECT pg_advisory_unlock(%s)", (_SWEEP_LOCK_KEY,))

    def submit(
        self,
        record: RunRecord,
        *,
        queue: str,
        max_attempts: int,
        submitted_by: str | None = None,
        idempotency_key: str | None = None,
        host: str | None = None,
    ) -> tuple[RunRecord, bool]:
        """Record a queued run; returns it and whether it is new.

        With an idempotency key, a second submission by the same key holder returns the
        first run instead of queuing another (a client retrying after a timeout queues
        once).
        """
        if idempotency_key is not None:
            existing = self._by_idempotency_key(submitted_by, idempotency_key)
            if existing is not None:
                return existing, False
        args = _submit_args(record, queue, max_attempts, submitted_by, idempotency_key, host)
        try:
            row = self._execute(_SUBMIT, args).fetchone()
        except psycopg.errors.UniqueViolation:
            # Two submissions with the same idempotency key raced: the other one won.
            if idempotency_key is None:
                raise
            existing = self._by_idempotency_key(submitted_by, idempotency_key)
            if existing is None:
                raise
            return existing, False
        return _submitted(record, row), True

    def _by_idempotency_key(self, submitted_by: str | None, key: str) -> RunRecord | None:
        row = self._dict_row(
            f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)} FROM omnilab.runs r "
            "JOIN omnilab.run_queue q ON q.run_id = r.id "
            "WHERE q.idempotency_key = %s AND q.submitted_by IS NOT DISTINCT FROM %s",
            (key, submitted_by),
        )
        return RunRecord.model_validate(row) if row else None

    def claim(
        self,
        run_id: str,
        *,
        worker: str,
        gpu: str | None,
        run_dir: str,
        environment: dict[str, Any],
        job: str | None = None,
    ) -> Claim | None:
        """Take a queued run for one attempt; None when someone else has it or it is over.

        One statement: of two deliveries of the same run, exactly one gets it.
        """
        row = self._execute(
            """
            WITH claimed AS (
                UPDATE omnilab.runs
                   SET status = 'running', started_at = now(), finished_at = NULL,
                       error = NULL, run_dir = %(run_dir)s, environment = %(environment)s,
                       waiting = NULL
                 WHERE id = %(id)s AND status = 'queued'
                RETURNING id, experiment, params, requires, code_sha256
            )
            UPDATE omnilab.run_queue q
               SET attempt = q.attempt + 1, worker = %(worker)s, gpu = %(gpu)s, job = %(job)s
              FROM claimed
             WHERE q.run_id = claimed.id
            RETURNING claimed.experiment, claimed.params, q.attempt, q.max_attempts,
                      claimed.requires, claimed.code_sha256
            """,
            {
                "id": run_id,
                "run_dir": run_dir,
                "environment": Jsonb(environment),
                "worker": worker,
                "gpu": gpu,
                "job": job,
            },
        ).fetchone()
        if row is None:
            return None
        experiment, params, attempt, max_attempts, requires, code = row
        return Claim(run_id, experiment, params, attempt, max_attempts, requires, code)

    def end_attempt(
        self,
        run_id: str,
        reason: str,
        *,
        statuses: tuple[str, ...] = ("running",),
        attempt: int | None = None,
        job: str | None = None,
    ) -> Literal["queued", "failed", "cancelled"] | None:
        """An attempt ended without the run finishing (its worker died or stopped).

        The run goes back to the queue when it has attempts left (the submitter's retry
        setting), is cancelled when a cancellation was requested meanwhile, and fails
        otherwise. Runs that never came through the queue simply fail. Returns the new
        status, or None when the run was no longer in one of ``statuses``.

        ``attempt`` or ``job`` (the message of the attempt): only if that attempt is still
        the run's current one. A worker that comes back after a sweeper gave its attempt
        to another worker must not end that other worker's attempt.
        """
        with self._transaction():
            row = self._execute(
                """
                SELECT r.status, q.attempt, q.max_attempts, q.cancel_requested_at IS NOT NULL,
                       q.worker, q.gpu, q.job
                  FROM omnilab.runs r LEFT JOIN omnilab.run_queue q ON q.run_id = r.id
                 WHERE r.id = %s FOR UPDATE OF r
                """,
                (run_id,),
            ).fetchone()
            if row is None or row[0] not in statuses:
                return None
            _, current, max_attempts, cancel_requested, worker, gpu, current_job = row
            if (attempt is not None and attempt != current) or (
                job is not None and job != current_job
            ):
                return None
            attempt = current
            if cancel_requested:
                self._execute(
                    "UPDATE omnilab.runs SET status = 'cancelled', finished_at = now(), "
                    "error = %s WHERE id = %s",
                    (f"cancelled on request; {reason}", run_id),
                )
                return "cancelled"
            if attempt is None or attempt >= max_attempts:
                tries = f" (attempt {attempt} of {max_attempts})" if attempt is not None else ""
                self._execute(
                    "UPDATE omnilab.runs SET status = 'failed', finished_at = now(), error = %s "
                    "WHERE id = %s",
                    (reason + tries, run_id),
                )
                return "failed"
            past = {
                "attempt": attempt,
                "worker": worker,
                "gpu": gpu,
                "ended_at": datetime.now().astimezone().isoformat(),
                "reason": reason,
            }
            self._execute(
                "UPDATE omnilab.runs SET status = 'queued', started_at = NULL, "
                "finished_at = NULL, error = NULL WHERE id = %s",
                (run_id,),
            )
            self._execute(
                "UPDATE omnilab.run_queue SET history = history || %s, queued_at = now(), "
                "worker = NULL, gpu = NULL WHERE run_id = %s",
                (Jsonb([past]), run_id),
            )
            return "queued"

    def fail_claimed(self, run_id: str, error: str, *, attempt: int | None = None) -> None:
        """A claimed attempt that could not start (bad params now, a service this worker
        cannot provide): the run fails with the reason, nothing having started. With
        ``attempt``: only while that attempt is still the run's current one."""
        self._execute(
            "UPDATE omnilab.runs SET status = 'failed', finished_at = now(), error = %s "
            f"WHERE id = %s AND status = 'running'{_CURRENT_ATTEMPT}",
            (error, run_id, attempt, attempt),
        )

    def record_cancelled(self, run_id: str, error: str, *, attempt: int | None = None) -> bool:
        """A cancelled attempt's outcome; a run that finished meanwhile keeps its own, and
        so does one that another attempt took over (given ``attempt``)."""
        cur = self._execute(
            "UPDATE omnilab.runs SET status = 'cancelled', error = %s, "
            "finished_at = coalesce(finished_at, now()) "
            f"WHERE id = %s AND status IN ('running', 'cancelled'){_CURRENT_ATTEMPT}",
            (error, run_id, attempt, attempt),
        )
        return cur.rowcount == 1

    def current_attempt(
        self, run_id: str, *, lock: bool = False
    ) -> tuple[str, int | None, str | None] | None:
        """The run's status, its current attempt and the worker (slot) holding it; with
        ``lock``, the run's row stays locked until the caller's transaction ends, so
        that no sweeper ends the attempt in between."""
        row = self._execute(
            "SELECT r.status, q.attempt, q.worker FROM omnilab.runs r "
            "LEFT JOIN omnilab.run_queue q ON q.run_id = r.id WHERE r.id = %s"
            + (" FOR UPDATE OF r" if lock else ""),
            (run_id,),
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def request_cancel(self, run_id: str) -> tuple[str, bool, str | None]:
        """Ask for a run to stop; returns (its status before, whether it has a queue row,
        the queue message of its running attempt).

        A queued run is cancelled at once (a worker that receives it later finds it
        taken). A running one gets the request recorded; the caller tells its worker (see
        :meth:`Broker.stop`), which stops it, tears its stack down and records it
        cancelled. The sweepers repeat the message until that is done. A finished run is
        left alone.
        """
        with self._transaction():
            row = self._execute(
                "SELECT r.status, q.run_id IS NOT NULL, q.job FROM omnilab.runs r "
                "LEFT JOIN omnilab.run_queue q ON q.run_id = r.id WHERE r.id = %s "
                "FOR UPDATE OF r",
                (run_id,),
            ).fetchone()
            if row is None:
                return "missing", False, None
            status, queued_here, job = row
            if status == "queued":
                self._execute(
                    "UPDATE omnilab.runs SET status = 'cancelled', finished_at = now(), "
                    "error = 'cancelled on request before it started', waiting = NULL "
                    "WHERE id = %s",
                    (run_id,),
                )
            if queued_here and status in ("queued", "running"):
                self._execute(
                    "UPDATE omnilab.run_queue SET cancel_requested_at = "
                    "coalesce(cancel_requested_at, now()) WHERE run_id = %s",
                    (run_id,),
                )
            return status, bool(queued_here), job

    def cancelling(self, older_than_s: float) -> list[str]:
        """Messages (rq job ids) of running attempts asked to stop more than
        ``older_than_s`` ago and still running: their stop request may have been lost."""
        rows = self._execute(
            """
            SELECT q.job FROM omnilab.runs r JOIN omnilab.run_queue q ON q.run_id = r.id
             WHERE r.status = 'running' AND q.job IS NOT NULL
               AND q.cancel_requested_at < now() - make_interval(secs => %s)
            """,
            (older_than_s,),
        ).fetchall()
        return [r[0] for r in rows]

    def cancel_requested(self, run_id: str) -> bool:
        row = self._execute(
            "SELECT cancel_requested_at IS NOT NULL FROM omnilab.run_queue WHERE run_id = %s",
            (run_id,),
        ).fetchone()
        return bool(row and row[0])

    def waiting(
        self, older_than_s: float, since: datetime | None = None
    ) -> tuple[list[tuple[str, str, int]], datetime]:
        """Queued runs (id, queue, delivery) waiting for longer than ``older_than_s`` (and
        queued at ``since`` or later): the ones whose message may never have reached
        Redis, or was lost with it; not those waiting for capacity, which have none. Also
        returns the cutoff, to pass as ``since`` next time."""
        row = self._execute("SELECT now() - make_interval(secs => %s)", (older_than_s,)).fetchone()
        assert row is not None
        cutoff = row[0]
        rows = self._execute(
            """
            SELECT r.id, q.queue, q.delivery FROM omnilab.runs r
              JOIN omnilab.run_queue q ON q.run_id = r.id
             WHERE r.status = 'queued' AND r.waiting IS NULL AND q.queued_at < %(cutoff)s
               AND (%(since)s::timestamptz IS NULL OR q.queued_at >= %(since)s)
             ORDER BY q.queued_at
            """,
            {"cutoff": cutoff, "since": since},
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows], cutoff

    def next_delivery(self, run_id: str) -> int | None:
        """Count one more message for a still-queued run; its number, or None if not
        queued."""
        row = self._execute(
            """
            UPDATE omnilab.run_queue q SET delivery = q.delivery + 1
              FROM omnilab.runs r
             WHERE q.run_id = %s AND r.id = q.run_id AND r.status = 'queued'
            RETURNING q.delivery
            """,
            (run_id,),
        ).fetchone()
        return int(row[0]) if row else None

    # -- placement (omnilab.queue.placement) ----------------------------------------------

    def to_place(self) -> list[Placed]:
        """Queued runs with requirements: waiting for capacity, or placed on a host that
        the reconciler checks still has a worker that can take them."""
        rows = self._execute(
            """
            SELECT r.id, r.requires, r.waiting, q.queue, q.host FROM omnilab.runs r
              JOIN omnilab.run_queue q ON q.run_id = r.id
             WHERE r.status = 'queued' AND r.requires IS NOT NULL
             ORDER BY r.created_at
            """
        ).fetchall()
        return [Placed(*row) for row in rows]

    def place(self, run_id: str, queue: str, host: str) -> int | None:
        """Move a still-queued run to ``host``'s queue; returns its next message's
        delivery number (None when it was taken or ended meanwhile)."""
        row = self._execute(
            """
            WITH run AS (
                UPDATE omnilab.runs SET waiting = NULL
                 WHERE id = %(id)s AND status = 'queued' RETURNING id
            )
            UPDATE omnilab.run_queue q
               SET queue = %(queue)s, host = %(host)s, delivery = q.delivery + 1
              FROM run WHERE q.run_id = run.id
            RETURNING q.delivery
            """,
            {"id": run_id, "queue": queue, "host": host},
        ).fetchone()
        return int(row[0]) if row else None

    def wait_for_capacity(self, run_id: str, queue: str, reason: str) -> bool:
        """A still-queued run no live worker can take: not placed anywhere, with why;
        False when it was taken or ended meanwhile."""
        row = self._execute(
            """
            WITH run AS (
                UPDATE omnilab.runs SET waiting = %(reason)s
                 WHERE id = %(id)s AND status = 'queued' RETURNING id
            )
            UPDATE omnilab.run_queue q SET queue = %(queue)s, host = NULL
              FROM run WHERE q.run_id = run.id
            RETURNING q.run_id
            """,
            {"id": run_id, "queue": queue, "reason": reason},
        ).fetchone()
        return row is not None

    def release(self, run_id: str, reason: str) -> bool:
        """Give back a claimed run that this worker turns out unable to take (it does not
        offer what the run requires): queued again, the attempt not counted, waiting for
        the reconciler to place it (``reason`` says why, meanwhile)."""
        with self._transaction():
            row = self._execute(
                "UPDATE omnilab.runs SET status = 'queued', started_at = NULL, "
                "environment = '{}'::jsonb, run_dir = NULL, waiting = %s "
                "WHERE id = %s AND status = 'running' RETURNING id",
                (reason, run_id),
            ).fetchone()
            if row is None:
                return False
            self._execute(
                "UPDATE omnilab.run_queue SET attempt = greatest(attempt - 1, 0), "
                "worker = NULL, gpu = NULL, job = NULL, host = NULL WHERE run_id = %s",
                (run_id,),
            )
        return True

    def queue_info(self, run_ids: list[str]) -> dict[str, QueueInfo]:
        if not run_ids:
            return {}
        rows = self._dict_rows(
            "SELECT run_id, queue, attempt, max_attempts, delivery, queued_at, worker, gpu, "
            "host, submitted_by, cancel_requested_at, history FROM omnilab.run_queue "
            "WHERE run_id = ANY(%s)",
            (run_ids,),
        )
        return {row.pop("run_id"): QueueInfo.model_validate(row) for row in rows}


class AsyncQueueStore(AsyncStore):
    """The queue's one statement on the event loop: the HTTP API's group commit."""

    async def submit_many(self, runs: list[NewRun]) -> datetime:
        """Record ``runs`` as queued in one statement (one transaction): all or none.
        Returns their ``created_at``, the same instant for all (the transaction's start).

        This is what lets the API commit the runs of concurrent requests together
        instead of paying a statement, a commit and a pool checkout per run.
        """
        rows = json.dumps([vars(run) for run in runs], allow_nan=False)
        async with self.pool.connection() as conn:
            cur = await conn.execute(_SUBMIT_MANY, (rows,))
            row = await cur.fetchone()
        assert row is not None, "no runs to record"
        return row[0]  # type: ignore[no-any-return]


def running_environment(pid: int, pid_start: int | None) -> dict[str, Any]:
    """What a claim records of the process running the attempt, so that a look at the
    runs from this host can tell when that process is gone (see reconcile_orphans)."""
    return {"hostname": host_name(), "pid": pid, "pid_start": pid_start}


def jsonable_params(params: dict[str, Any]) -> str | None:
    """Why ``params`` cannot be stored as jsonb, or None when it can.

    PostgreSQL's jsonb refuses NUL characters and JSON has no NaN or infinity; refusing
    them here turns what would be a server error into a clear 422.
    """
    try:
        text = json.dumps(params, allow_nan=False)
    except ValueError:
        return "NaN and infinite numbers are not allowed"
    except TypeError as exc:
        return str(exc)
    if "\\u0000" in text:
        return "NUL characters are not allowed"
    return None
