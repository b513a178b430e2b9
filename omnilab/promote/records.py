"""Promotions in the tracking store (``omnilab.promotions``), and the run's data state.

A promotion's row is written before anything is copied and updated as each item moves
on (staging, with the staging place named first; staged; committed; switching,
switched), so that a promotion whose process died can be finished by the next omnilab
process (:mod:`omnilab.promote.recovery`).
"""

from __future__ import annotations

import builtins
import contextlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from omnilab.errors import UsageError
from omnilab.host import host_name
from omnilab.procs import process_start_time
from omnilab.services.promotable import ItemRecord
from omnilab.tracking.base import Store

if TYPE_CHECKING:
    from omnilab.progress import Reporter

PromotionStatus = Literal["running", "succeeded", "failed", "refused", "rolled_back"]
#: One promotion or rollback at a time per tracking store: two promotions switching the
#: same production item at once could not both keep what they replaced.
_LOCK_KEY = 0x6F6D7072  # "ompr"

_COLUMNS = (
    "id",
    "run_id",
    "status",
    "on_conflict",
    "actor",
    "host",
    "pid",
    "pid_start",
    "items",
    "error",
    "created_at",
    "finished_at",
    "rolled_back_at",
    "rolled_back_by",
    "pruned_at",
    "committed_at",
    "recovered",
)


class PromotionRecord(BaseModel):
    """One promotion as recorded: who, when, which run, each item's plan and outcome."""

    id: str
    run_id: str
    status: PromotionStatus
    on_conflict: str
    actor: str
    host: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    items: list[ItemRecord] = Field(default_factory=list)
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    rolled_back_at: datetime | None = None
    rolled_back_by: str | None = None
    pruned_at: datetime | None = None
    #: When every item was staged and verified, just before the first switch: from then
    #: on an interrupted promotion is finished (rolled forward), before it is undone.
    committed_at: datetime | None = None
    #: What finishing it after its process died did, by whom (or why not yet).
    recovered: str | None = None
    #: Joined from the run, for listings.
    experiment: str | None = None
    run_name: str | None = None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @classmethod
    def start(cls, promotion_id: str, run_id: str, on_conflict: str, actor: str) -> PromotionRecord:
        pid = os.getpid()
        return cls(
            id=promotion_id,
            run_id=run_id,
            status="running",
            on_conflict=on_conflict,
            actor=actor,
            host=host_name(),
            pid=pid,
            pid_start=process_start_time(pid),
            created_at=datetime.now(UTC),
        )


class PromotionStore(Store):
    """Promotions (``omnilab.promotions``), their lock, and the state of the run's
    retained data (``runs.stack->'data'``)."""

    # -- the lock ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, reporter: Reporter) -> Iterator[None]:
        """Hold the promotion lock; say once if another promotion makes us wait."""
        said = False
        while not self._try_lock():
            if not said:
                running = self.running()
                who = f" ({running[0].short_id}, run {running[0].run_id[:8]})" if running else ""
                reporter.note(f"waiting for another promotion to finish{who}")
                said = True
            time.sleep(0.2)
        try:
            yield
        finally:
            self._execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))

    @contextlib.contextmanager
    def lock_if_free(self) -> Iterator[bool]:
        """Hold the promotion lock if nobody does (yields False, without waiting, when a
        promotion is running): for the reconcilers, which must never wait on one."""
        got = self._try_lock()
        try:
            yield got
        finally:
            if got:
                self._execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))

    def _try_lock(self) -> bool:
        row = self._execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
        return bool(row and row[0])

    # -- promotions -------------------------------------------------------------------------

    def save(self, record: PromotionRecord) -> None:
        data = record.model_dump(mode="json", exclude={"experiment", "run_name"})
        data["items"] = Jsonb(data["items"])
        columns = [c for c in _COLUMNS if c in data]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
        self._execute(
            f"INSERT INTO omnilab.promotions ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) "
            f"ON CONFLICT (id) DO UPDATE SET {updates}",
            [data[c] for c in columns],
        )

    def _select(self, where: str, params: Any, limit: int | None = None) -> list[PromotionRecord]:
        cols = ", ".join(f"p.{c}" for c in _COLUMNS)
        query = (
            f"SELECT {cols}, r.experiment, r.name AS run_name FROM omnilab.promotions p "
            f"JOIN omnilab.runs r ON r.id = p.run_id {where} ORDER BY p.created_at DESC, p.id"
        )
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [PromotionRecord.model_validate(r) for r in self._dict_rows(query, params)]

    def get(self, ref: str) -> PromotionRecord:
        """A promotion by id or unique prefix (at least 4 characters)."""
        ref = ref.strip()
        if len(ref) < 4:
            raise UsageError(f"promotion id {ref!r} is too short: give at least 4 characters")
        found = self._select(
            "WHERE p.id LIKE %s", (ref.replace("%", "").replace("_", r"\_") + "%",), 2
        )
        if not found:
            raise UsageError(f"no promotion matches {ref!r} (see `omnilab promotions ls`)")
        if len(found) > 1:
            raise UsageError(f"{ref!r} matches several promotions; give more characters")
        return found[0]

    # Below this method, `list` in the class body is the method: annotations say builtins.list.
    def list(self, *, run_id: str | None = None, limit: int = 20) -> list[PromotionRecord]:
        if run_id:
            return self._select("WHERE p.run_id = %s", (run_id,), limit)
        return self._select("", (), limit)

    def running(self) -> builtins.list[PromotionRecord]:
        return self._select("WHERE p.status = 'running'", ())

    def any_running(self) -> bool:
        """Whether a promotion is recorded as running (one index lookup: what the
        reconcilers ask every few seconds)."""
        row = self._execute(
            "SELECT EXISTS (SELECT 1 FROM omnilab.promotions WHERE status = 'running')"
        ).fetchone()
        return bool(row and row[0])

    def later_on_same_target(self, record: PromotionRecord) -> builtins.list[PromotionRecord]:
        """Succeeded promotions after ``record`` that wrote one of its targets."""
        mine = {_target_id(i) for i in record.items if i.state == "switched"}
        later = self._select(
            "WHERE p.status = 'succeeded' AND p.created_at > %s AND p.id <> %s",
            (record.created_at, record.id),
        )
        return [
            p for p in later if mine & {_target_id(i) for i in p.items if i.state == "switched"}
        ]

    # -- the run's retained data ----------------------------------------------------------

    def set_run_data(self, run_id: str, **changes: Any) -> None:
        """Update ``runs.stack->'data'`` (the state of the run's retained stack data)."""
        self._execute(
            "UPDATE omnilab.runs SET stack = jsonb_set(stack, '{data}', "
            "coalesce(stack->'data', '{}'::jsonb) || %s::jsonb) WHERE id = %s",
            (Jsonb(changes), run_id),
        )

    def retained_runs(self) -> builtins.list[tuple[str, dict[str, Any]]]:
        """Runs whose data is still retained (state "kept"), with their data record."""
        rows = self._execute(
            "SELECT id, stack->'data' FROM omnilab.runs WHERE stack->'data'->>'state' = 'kept'"
        ).fetchall()
        return [(r[0], r[1]) for r in rows]


def _target_id(item: ItemRecord) -> tuple[str, str, str]:
    return (item.plan.service, item.plan.target_url, item.plan.target)
