"""``omnilab worker`` processes as the tracking store sees them.

Each worker writes a heartbeat; one that stops writing (killed, its host gone) is dead
after the TTL, and the runs it held are ended by whoever sweeps next (another worker or
the API): queued again or failed, per the run's retry setting. On the worker's own host a
dead process is recognised at once, without waiting for the TTL.

Silence is evidence only while the store could hear: a sweeper whose own connection is
younger than the TTL (the store restarted, or the sweeper was cut off from it) judges no
worker by the age of its heartbeat, since no heartbeat could have been written meanwhile.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from omnilab.host import host_name
from omnilab.procs import owner_alive
from omnilab.requirements import GpuOffer, Offer
from omnilab.tracking.base import Store
from omnilab.tracking.queued_runs import QueueStore


class WorkerRecord(BaseModel):
    id: str
    host: str
    pid: int
    pid_start: int | None = None
    concurrency: int
    gpus: list[str]
    queues: list[str]
    version: str | None = None
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None
    #: Runtime plug-ins that work on its host (local always; docker when an engine answers).
    runtimes: list[str] = Field(default_factory=list)
    #: The GPUs it hands out, with model and memory where the host's driver says them.
    gpu_details: list[GpuOffer] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def offer(self) -> Offer:
        return Offer(
            host=self.host, runtimes=self.runtimes, gpus=self.gpu_details, labels=self.labels
        )


WorkerStatus = Literal["alive", "stopped", "lost"]


class WorkerView(WorkerRecord):
    """A worker as ``omnilab workers`` and ``GET /v1/workers`` show it."""

    #: alive: heartbeat within the TTL; stopped: it ended (or a sweeper ended it);
    #: lost: silent past the TTL, not yet ended by a sweep.
    status: WorkerStatus
    running: list[str] = Field(default_factory=list)


class Capacity(BaseModel):
    """The live workers and how busy each host is, for placing runs."""

    workers: list[WorkerRecord]
    #: Worker id -> runs it is running now.
    running: dict[str, int] = Field(default_factory=dict)
    #: Host -> runs placed on its queue and not taken yet.
    placed: dict[str, int] = Field(default_factory=dict)


@dataclass(frozen=True)
class HostWorkers:
    """What the store knows of one host's workers (see :meth:`WorkerStore.on_host`)."""

    live: int
    with_lane: int
    #: Seconds since the latest heartbeat of any worker of the host; None: never one.
    last_heartbeat_s: float | None


class WorkerStore(Store):
    """``omnilab worker`` processes: registered, beating, stopped, found dead."""

    def register(
        self,
        worker_id: str,
        *,
        pid: int,
        pid_start: int | None,
        concurrency: int,
        gpus: list[str],
        queues: list[str],
        version: str,
        runtimes: list[str] | None = None,
        gpu_details: list[GpuOffer] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """Record a worker as live, with what it offers; again after the store lost or
        ended its record."""
        self._execute(
            """
            INSERT INTO omnilab.workers
                (id, host, pid, pid_start, concurrency, gpus, queues, version, runtimes,
                 gpu_details, labels)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (id) DO UPDATE SET
                heartbeat_at = now(), stopped_at = NULL, pid = excluded.pid,
                pid_start = excluded.pid_start, concurrency = excluded.concurrency,
                gpus = excluded.gpus, queues = excluded.queues, version = excluded.version,
                runtimes = excluded.runtimes, gpu_details = excluded.gpu_details,
                labels = excluded.labels
            """,
            (
                worker_id,
                host_name(),
                pid,
                pid_start,
                concurrency,
                Jsonb(gpus),
                Jsonb(queues),
                version,
                Jsonb(list(runtimes or [])),
                Jsonb([g.model_dump() for g in gpu_details or []]),
                Jsonb(dict(labels or {})),
            ),
        )

    def heartbeat(self, worker_id: str) -> bool:
        """False when the store has no live record of the worker (lost with a restore, or
        ended by a sweeper that took it for dead): it should register again."""
        cursor = self._execute(
            "UPDATE omnilab.workers SET heartbeat_at = now() WHERE id = %s AND stopped_at IS NULL",
            (worker_id,),
        )
        return cursor.rowcount == 1

    def stopped(self, worker_id: str) -> None:
        self._execute(
            "UPDATE omnilab.workers SET stopped_at = coalesce(stopped_at, now()) WHERE id = %s",
            (worker_id,),
        )

    def live(self, ttl_s: float) -> list[WorkerRecord]:
        rows = self._dict_rows(
            "SELECT * FROM omnilab.workers WHERE stopped_at IS NULL "
            "AND heartbeat_at > now() - make_interval(secs => %s) ORDER BY started_at",
            (ttl_s,),
        )
        return [WorkerRecord.model_validate(r) for r in rows]

    def on_host(self, host: str, queue: str, ttl_s: float) -> HostWorkers:
        """The workers of ``host``: how many are live, how many of those listen on
        ``queue`` (its task lane), and how long ago any of them last beat."""
        row = self._execute(
            """
            SELECT count(*) FILTER (WHERE live),
                   count(*) FILTER (WHERE live AND queues ? %(queue)s),
                   extract(epoch FROM now() - max(heartbeat_at))
              FROM (SELECT *, stopped_at IS NULL
                              AND heartbeat_at > now() - make_interval(secs => %(ttl)s) AS live
                      FROM omnilab.workers WHERE host = %(host)s) w
            """,
            {"host": host, "queue": queue, "ttl": ttl_s},
        ).fetchone()
        assert row is not None
        live, with_lane, age = row
        return HostWorkers(int(live), int(with_lane), float(age) if age is not None else None)

    def capacity(self, ttl_s: float) -> Capacity:
        """Live workers, the runs each is running and the runs placed on each host's
        queue not taken yet: what placement weighs (two reads)."""
        workers = self.live(ttl_s)
        rows = self._execute(
            """
            SELECT 'worker', split_part(q.worker, '/', 1), count(*) FROM omnilab.runs r
              JOIN omnilab.run_queue q ON q.run_id = r.id
             WHERE r.status = 'running' AND q.worker IS NOT NULL GROUP BY 2
            UNION ALL
            SELECT 'host', q.host, count(*) FROM omnilab.runs r
              JOIN omnilab.run_queue q ON q.run_id = r.id
             WHERE r.status = 'queued' AND q.host IS NOT NULL GROUP BY 2
            """
        ).fetchall()
        running = {key: int(n) for kind, key, n in rows if kind == "worker"}
        placed = {key: int(n) for kind, key, n in rows if kind == "host"}
        return Capacity(workers=workers, running=running, placed=placed)

    def overview(self, ttl_s: float, *, everything: bool = False) -> list[WorkerView]:
        """Workers to show: every live one and, for each host without one, the last that
        ran there (so a host that went away still shows, as stopped or lost); with
        ``everything``, every worker ever recorded (the latest 1,000)."""
        status = """
            SELECT w.*, CASE
                       WHEN w.stopped_at IS NOT NULL THEN 'stopped'
                       WHEN w.heartbeat_at > now() - make_interval(secs => %(ttl)s)
                            THEN 'alive'
                       ELSE 'lost' END AS status
              FROM omnilab.workers w
        """
        if everything:
            query = status + " ORDER BY w.heartbeat_at DESC LIMIT 1000"
        else:
            query = (
                status
                + """
             WHERE (w.stopped_at IS NULL
                    AND w.heartbeat_at > now() - make_interval(secs => %(ttl)s))
                OR w.id IN (SELECT DISTINCT ON (host) id FROM omnilab.workers
                             ORDER BY host, heartbeat_at DESC)
             ORDER BY w.host, w.heartbeat_at DESC
            """
            )
        rows = self._dict_rows(query, {"ttl": ttl_s})
        running = self.running_runs()
        views = [
            WorkerView.model_validate({**row, "running": running.get(row["id"], [])})
            for row in rows
        ]
        if everything:
            return views
        # A host with a live worker shows its live ones only.
        alive_hosts = {v.host for v in views if v.status == "alive"}
        return [v for v in views if v.status == "alive" or v.host not in alive_hosts]

    def running_runs(self) -> dict[str, list[str]]:
        """Worker id -> the runs it is running now, oldest first."""
        rows = self._execute(
            "SELECT split_part(q.worker, '/', 1), r.id FROM omnilab.runs r "
            "JOIN omnilab.run_queue q ON q.run_id = r.id "
            "WHERE r.status = 'running' AND q.worker IS NOT NULL ORDER BY r.started_at"
        ).fetchall()
        running: dict[str, list[str]] = defaultdict(list)
        for worker_id, run_id in rows:
            running[worker_id].append(run_id)
        return running

    def end_dead(self, ttl_s: float) -> dict[str, str]:
        """Mark dead workers stopped and end the attempts they held; returns {run id:
        status}.

        Dead: no heartbeat for ``ttl_s`` while this connection has been open (so the
        store could hear one), or (on this host) its process is gone.
        """
        host = host_name()
        rows = self._execute(
            """
            SELECT id, host, pid, pid_start,
                   heartbeat_at < now() - make_interval(secs => %(ttl)s)
                   AND (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
                       < now() - make_interval(secs => %(ttl)s)
              FROM omnilab.workers WHERE stopped_at IS NULL
            """,
            {"ttl": ttl_s},
        ).fetchall()
        dead: dict[str, str] = {}
        for worker_id, worker_host, pid, pid_start, stale in rows:
            if stale:
                dead[worker_id] = f"its worker {worker_id} on {worker_host} stopped answering"
            elif worker_host == host and not owner_alive(pid, pid_start):
                dead[worker_id] = f"its worker {worker_id} (pid {pid} on {host}) died"
        # Runs held by a worker that stopped (cleanly or not) but are still marked running.
        held = self._execute(
            """
            SELECT r.id, split_part(q.worker, '/', 1), w.stopped_at IS NOT NULL
              FROM omnilab.runs r
              JOIN omnilab.run_queue q ON q.run_id = r.id
              LEFT JOIN omnilab.workers w ON w.id = split_part(q.worker, '/', 1)
             WHERE r.status = 'running' AND q.worker IS NOT NULL
            """
        ).fetchall()
        queue = QueueStore(self)
        ended: dict[str, str] = {}
        for run_id, worker_id, worker_stopped in held:
            reason = dead.get(worker_id)
            if reason is None and worker_stopped:
                reason = f"its worker {worker_id} stopped without finishing it"
            if reason is None:
                continue
            status = queue.end_attempt(run_id, f"the attempt was lost: {reason}")
            if status is not None:
                ended[run_id] = status
        for worker_id in dead:
            self.stopped(worker_id)
        return ended


def describe(record: WorkerRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")
