"""Promoting a run: plan every item, stage and verify every item, then switch them.

All or nothing, as production readers see it: nothing is switched until every item is
staged and verified; then the promotion is recorded as committed and the items switch
one after the other, each atomically, back to back (milliseconds; SIGTERM and Ctrl-C
wait until they are done). If a switch fails, the items already switched are switched
back. If the process dies, the record says how far it got and the next omnilab process
that meets it finishes the job (:mod:`omnilab.promote.recovery`): rolled forward once
committed, undone before.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from omnilab import environment
from omnilab.config import Settings, get_settings
from omnilab.errors import OmnilabError, UsageError
from omnilab.progress import QuietReporter, Reporter
from omnilab.promote import retention, since_fork
from omnilab.promote.items import item_from_dict, other_production, switch_order
from omnilab.promote.models import PromotionResult, RunDiff
from omnilab.promote.records import PromotionRecord, PromotionStore
from omnilab.promote.recovery import reconcile
from omnilab.services.promotable import (
    ON_CONFLICT,
    ItemPlan,
    ItemRecord,
    Progress,
    Promotable,
    Promoter,
    PromotionConflict,
    PromotionError,
    PromotionFailed,
    PromotionRefused,
    SinceFork,
    pause_point,
)
from omnilab.tracking.store import TrackingStore

if TYPE_CHECKING:
    from omnilab.experiment import Experiment
    from omnilab.recorded import Run
    from omnilab.stack import Stack
    from omnilab.tracking.records import RunRecord


class Interrupted(BaseException):
    """SIGTERM during a promotion: raised so that the cleanup runs, as for Ctrl-C."""


class _HeldSignals:
    """SIGTERM and Ctrl-C held back while a committed promotion switches its items
    (milliseconds): it is finished rather than undone half way, then the signal acts."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.signum = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, action in previous.items():
                signal.signal(signum, action)

    def deliver(self, reporter: Reporter) -> None:
        if self.signum is None:
            return
        reporter.note("stopping now, as asked during the switches (the promotion is done)")
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_on_conflict(value: str) -> str:
    if value not in ON_CONFLICT:
        raise UsageError(f"--on-conflict {value!r}: choose one of {', '.join(ON_CONFLICT)}")
    return value


def promote(
    run: str | Run,
    *,
    dry_run: bool = False,
    on_conflict: str = "fail",
    actor: str | None = None,
    settings: Settings | None = None,
    reporter: Reporter | None = None,
) -> PromotionResult:
    """Promote what the run's experiment declares in ``promotes`` into production.

    ``dry_run=True`` returns the plan and changes nothing. Otherwise the items are
    staged, verified and switched, the promotion is recorded, and the run's kept stack
    data is released. Raises :class:`PromotionConflict` (a ``UsageError``) when
    production holds a different item of the same name and ``on_conflict="fail"``, and
    :class:`PromotionFailed` when a copy, a verification or a switch failed (production
    is then as it was); both carry the plan as ``.result``.
    """
    check_on_conflict(on_conflict)
    settings = settings or get_settings()
    reporter = reporter or Reporter()
    actor = actor or environment.owner()
    if settings.environment == "docker_experiments":
        raise UsageError(
            "ENVIRONMENT=docker_experiments: QDRANT_URL, REDIS_URL and POSTGRES_URL point at "
            "experiment services here, not at production; promote from the host"
        )
    ref = run if isinstance(run, str) else run.id
    with TrackingStore.open(settings) as store:
        promotions = PromotionStore(store)
        record = store.get_run(ref)
        items = _declared(record)
        if dry_run:
            return _Promotion(store, record, items, on_conflict, actor, settings, reporter).run(
                dry_run=True
            )
        with promotions.lock(reporter):
            reconcile(promotions, settings, reporter).raise_if_stuck()
            record = store.get_run(record.id)  # its state may have changed while waiting
            return _Promotion(store, record, items, on_conflict, actor, settings, reporter).run()


def diff(
    run: str | Run, *, settings: Settings | None = None, reporter: Reporter | None = None
) -> RunDiff:
    """What promoting the run would add, change and remove in production, per item, and
    whether production changed since the fork: the plan's diffs (``promote(run,
    dry_run=True)``), as a table. Changes nothing."""
    result = promote(run, dry_run=True, settings=settings, reporter=reporter or QuietReporter())
    return RunDiff(run_id=result.run_id, experiment=result.experiment, items=result.items)


def _declared(record: RunRecord) -> list[Promotable]:
    if record.status != "succeeded":
        raise UsageError(
            f"run {record.short_id} {record.status}: only a succeeded run can be promoted"
        )
    data = retention.run_data(record)
    if not data or not data.get("promotes"):
        raise UsageError(
            f"run {record.short_id} ({record.experiment}) has nothing to promote: its "
            "experiment declares no `promotes`"
        )
    return [item_from_dict(d) for d in data["promotes"]]


class _Promotion:
    """One promotion of one run, from the reopened stack to production."""

    def __init__(
        self,
        store: TrackingStore,
        record: RunRecord,
        items: list[Promotable],
        on_conflict: str,
        actor: str,
        settings: Settings,
        reporter: Reporter,
    ) -> None:
        self.store = store
        self.promotions = PromotionStore(store)
        self.run_record = record
        self.items = items
        self.on_conflict = on_conflict
        self.actor = actor
        self.settings = settings
        self.reporter = reporter
        self.id = uuid.uuid4().hex
        self.began = time.monotonic()

    def result(self, status: str, records: list[ItemRecord], **kw: Any) -> PromotionResult:
        return PromotionResult(
            run_id=self.run_record.id,
            experiment=self.run_record.experiment,
            run_name=self.run_record.name,
            status=status,  # type: ignore[arg-type]
            on_conflict=self.on_conflict,
            actor=self.actor,
            items=records,
            seconds=round(time.monotonic() - self.began, 3),
            **kw,
        )

    def run(self, *, dry_run: bool = False) -> PromotionResult:
        data = retention.run_data(self.run_record) or {}
        if data.get("state") != "kept":
            return self._after_release(data)
        path = retention.check_here(self.run_record, data)
        stack = self._reopen(path)
        promoters: list[Promoter] = []
        try:
            for item in self.items:
                promoters.append(
                    item.promoter(
                        self.settings, self.id, stack.endpoint(item.service), self.reporter
                    )
                )
            checks = since_fork.check(self.run_record, self.items, self.settings, self.reporter)
            records = []
            for item, promoter, since in zip(self.items, promoters, checks, strict=True):
                plan = self._plan(promoter, since)
                if dry_run:
                    plan.diff = promoter.diff(since=since)
                records.append(ItemRecord(item=item.to_dict(), plan=plan))
            if dry_run:
                return self.result("planned", records, dry_run=True, data="kept")
            self._refuse_before_copying(records)
            if all(r.plan.action == "nothing" for r in records):
                return self.result("nothing_to_do", records, data="kept")
            result = self._carry_out(records, promoters)
        finally:
            for promoter in promoters:
                with contextlib.suppress(Exception):
                    promoter.close()
            stack.close()
        try:
            retention.release(self.store, self.run_record, "promoted", self.reporter)
            result.data = "released"
        except (OSError, OmnilabError) as exc:  # promoted all the same: say so, keep going
            self.reporter.note(f"warning: the run's stack data could not be removed: {exc}")
            result.data = "kept"
        return result

    def _plan(self, promoter: Promoter, since: SinceFork | None) -> ItemPlan:
        """The item's plan, with what production did since the fork (git's rule for a
        push): an item the run was forked from whole, that production still holds as it
        was, is a fast-forward (replaced, kept for rollback, with no --on-conflict
        needed); one production changed since is refused under ``--on-conflict fail``,
        naming what changed, and goes on as any conflict would with ``replace`` or
        ``version``. The decision is part of the plan, so of the promotion's record."""
        on_conflict = self.on_conflict
        forward = since is not None and not since.changed and not since.partial
        plan = promoter.plan("replace" if forward and on_conflict == "fail" else on_conflict)  # type: ignore[arg-type]
        plan.since_fork = since
        if since is None:
            return plan
        if not since.changed:
            if plan.action == "replace" and forward and on_conflict == "fail":
                since.decision = "fast-forward"
                plan.reason = f"production unchanged since the fork: fast-forward; {plan.reason}"
            else:
                since.decision = "as planned"
                if since.partial and plan.action == "conflict":
                    plan.notes.append(
                        "production is unchanged since the fork, but the seed copied part of "
                        "the item: replacing it would drop what the run never had"
                    )
            return plan
        if plan.action == "nothing":
            since.decision = "nothing to do"
            return plan
        if on_conflict == "fail":
            since.decision = "refused"
            plan.action = "conflict"
            plan.reason = f"{since.what}; use --on-conflict replace or version"
            return plan
        since.decision = on_conflict
        plan.notes.append(f"{since.what}; going on as --on-conflict {on_conflict} says")
        return plan

    def _refuse_before_copying(self, records: list[ItemRecord]) -> None:
        """Conflicts (a usage error: another --on-conflict resolves them) and items
        production cannot accept (its server cannot read the run's data, no route works)
        refuse the promotion before anything is copied, with the plan as ``.result``."""
        conflicts = [r for r in records if r.plan.action == "conflict"]
        incompatible = [r for r in records if r.plan.action == "incompatible"]
        refused = conflicts or incompatible
        if not refused:
            return
        message = "; ".join(f"{r.plan.label}: {r.plan.reason}" for r in refused)
        error: PromotionError = (
            PromotionConflict(message) if conflicts else PromotionRefused(message)
        )
        result = self.result("refused", records, data="kept", error=message)
        error.result = result  # type: ignore[attr-defined]
        raise error

    def _reopen(self, path: Any) -> Stack:
        from omnilab.stack import Stack

        names = sorted({item.service for item in self.items})
        began = time.monotonic()
        stack = Stack.reopen(path, services=names, reporter=QuietReporter(), settings=self.settings)
        self.reporter.note(
            f"run {self.run_record.short_id}: stack reopened on its kept data "
            f"({', '.join(names)}) in {time.monotonic() - began:.2f}s"
        )
        return stack

    # -- carrying it out ----------------------------------------------------------------------

    def _carry_out(self, records: list[ItemRecord], promoters: list[Promoter]) -> PromotionResult:
        record = PromotionRecord.start(self.id, self.run_record.id, self.on_conflict, self.actor)
        record.items = records
        self.promotions.save(record)
        self.reporter.note(
            f"promotion {self.id[:8]} of run {self.run_record.short_id} "
            f"({self.run_record.experiment}) into production"
        )
        active = [
            (r, p) for r, p in zip(records, promoters, strict=True) if r.plan.action != "nothing"
        ]
        held = _HeldSignals()
        try:
            with _sigterm_interrupts():
                for item, promoter in active:
                    self._stage(record, item, promoter)
                with held.holding():
                    self._switch(record, active)
        except BaseException as exc:
            self._undo(record, active, exc)
            status = "refused" if isinstance(exc, PromotionRefused) else "failed"
            result = self.result(status, records, id=self.id, error=record.error, data="kept")
            if isinstance(exc, KeyboardInterrupt | Interrupted):
                raise
            if isinstance(exc, PromotionFailed):
                exc.result = result  # type: ignore[attr-defined]
                raise
            error = PromotionFailed(record.error or str(exc))
            error.result = result  # type: ignore[attr-defined]
            raise error from exc
        held.deliver(self.reporter)
        return self.result("succeeded", records, id=self.id)

    def _switch(self, record: PromotionRecord, active: list[tuple[ItemRecord, Promoter]]) -> None:
        """Commit, then switch every item back to back: readers see a mix of old and new
        items only between the first switch and the last (``seconds["switched"]`` of
        each item: when it was switched, counted from the commit). Nothing is recorded
        between the switches (the recovery asks production which are switched); the
        states live in memory for an undo, and are recorded with the outcome."""
        for item, promoter in active:
            item.switch.update(promoter.intended_switch(item))
        record.committed_at = datetime.now(UTC)
        self.promotions.save(record)
        pause_point("committed")
        committed = time.monotonic()
        for item, promoter in sorted(active, key=lambda rp: switch_order(rp[0])):
            item.state = "switching"
            began = time.monotonic()
            promoter.switch(item)
            done = time.monotonic()
            item.state = "switched"
            item.seconds["switch"] = round(done - began, 4)
            item.seconds["switched"] = round(done - committed, 4)
            pause_point(f"switched:{item.plan.service}")
        record.status = "succeeded"
        record.finished_at = datetime.now(UTC)
        self.promotions.save(record)
        for item, _ in active:
            self.reporter.note(f"  switched {item.plan.label} -> {item.plan.target}")

    def _stage(self, record: PromotionRecord, item: ItemRecord, promoter: Promoter) -> None:
        plan = item.plan
        item.state = "staging"
        # Where the copy goes is recorded before it begins: whoever finishes a promotion
        # killed half way through a copy finds what it left.
        promoter.reserve(item)
        self.promotions.save(record)
        self.reporter.note(
            f"  staging {plan.label}: {plan.source_count:,} {plan.unit} ({plan.action})"
        )
        with Progress(
            self.reporter, plan.label, plan.source_count, plan.unit, step=f"copying:{plan.service}"
        ) as progress:
            promoter.stage(item, progress)
        item.seconds["stage"] = round(progress.seconds, 4)
        item.state = "staged"
        self.promotions.save(record)
        self.reporter.note(
            f"  staged {plan.label}: {item.counts.get('target', 0):,} {plan.unit} in "
            f"{progress.seconds:.2f}s; counts and checksums match the run's"
        )

    def _undo(
        self,
        record: PromotionRecord,
        active: list[tuple[ItemRecord, Promoter]],
        exc: BaseException,
    ) -> None:
        """Switch back what was switched, remove what was staged, record the failure."""
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt | Interrupted):
            reason = "interrupted"
        failed = next((i for i, _ in active if i.state in ("staging", "switching")), None)
        if failed is not None:
            # Shown under the item's own label: without the label the message starts with.
            failed.error = reason.removeprefix(f"{failed.plan.label}: ")
        # The reason is the error the caller gets (and the CLI prints once): not here.
        self.reporter.note("promotion stopped; undoing what it did")
        if record.committed_at is not None:
            # A switch failed: undone, not rolled forward. Recorded before anything is
            # undone, with the states as they are, so that an undo killed half way is
            # finished in the same direction.
            record.committed_at = None
            record.error = reason
            try:
                self.promotions.save(record)
            except Exception as save_exc:
                self.reporter.note(
                    f"  cannot record the failure ({save_exc}); nothing undone here: the next "
                    "omnilab process finishes the promotion as its record says"
                )
                record.error = f"{reason}; not undone: {save_exc}"
                return
        undo_errors = []
        for item, promoter in reversed(active):
            try:
                if item.state == "switched" or (
                    item.state == "switching" and promoter.is_switched(item)
                ):
                    promoter.unswitch(item)
                    item.state = "reverted"
                    self.reporter.note(f"  switched back {item.plan.label}")
                if item.state in ("staging", "staged", "switching", "reverted"):
                    promoter.discard_staging(item)
                if item.state != "reverted":
                    item.state = "failed"
            except Exception as undo_exc:  # keep going: every item gets its chance
                item.error = f"could not be undone: {undo_exc}"
                undo_errors.append(f"{item.plan.label}: {undo_exc}")
        # Refused: omnilab said no (a staged copy that did not match), and undid it all.
        refused = isinstance(exc, PromotionRefused) and not undo_errors
        record.status = "refused" if refused else "failed"
        record.error = reason + (
            f"; UNDO FAILED for {'; '.join(undo_errors)}" if undo_errors else ""
        )
        record.finished_at = datetime.now(UTC)
        with contextlib.suppress(Exception):
            self.promotions.save(record)
        if not undo_errors:
            self.reporter.note("  production is as it was before the promotion")

    # -- a run whose data was already released -------------------------------------------

    def _after_release(self, data: dict[str, Any]) -> PromotionResult:
        """Promoted before (and its data released): nothing to do if production still
        holds what that promotion put there."""
        state = data.get("state", "gone")
        if state == "live":
            raise UsageError(
                f"run {self.run_record.short_id}'s stack was left running (--keep), so its data "
                "was not kept for promotion; run the experiment again without --keep"
            )
        earlier = [
            p for p in self.promotions.list(run_id=self.run_record.id, limit=50)
            if p.status == "succeeded" and not other_production(p.items, self.settings)
        ]  # fmt: skip
        if not earlier:
            raise UsageError(
                f"run {self.run_record.short_id}'s stack data was {state}: there is nothing "
                "left to promote (into this production)"
            )
        last = earlier[0]
        records = []
        changed = []
        for item in last.items:
            record = item.model_copy(deep=True)
            if item.state == "switched":
                promoter = item_from_dict(item.item).promoter(
                    self.settings, last.id, None, self.reporter
                )
                try:
                    current = promoter.target_checksum(item)
                finally:
                    promoter.close()
                if current != item.checksums.get("target"):
                    changed.append(item.plan.target)
            record.plan.action = "nothing"
            record.plan.reason = f"promoted by {last.short_id}; production unchanged since"
            if item.state == "switched":  # production holds what that promotion copied
                record.plan.target_count = item.counts.get("target", item.plan.source_count)
            record.state = "planned"
            records.append(record)
        if changed:
            raise PromotionFailed(
                f"run {self.run_record.short_id} was promoted by {last.short_id} and its stack "
                f"data released; production's {', '.join(changed)} changed since, and there "
                "is no run data left to promote again"
            )
        return self.result("nothing_to_do", records, data=state)


def promote_after_run(
    run: Run,
    experiment: type[Experiment],
    *,
    on_conflict: str,
    settings: Settings,
    reporter: Reporter,
) -> PromotionResult:
    """``omnilab run --promote``: promote a succeeded run if ``accept(summary)`` says yes.

    Never raises for a promotion that fails: the run itself succeeded and is recorded; the
    result says what happened to the promotion.
    """
    outcome = functools.partial(
        PromotionResult,
        run_id=run.id,
        experiment=run.experiment,
        run_name=run.name,
        on_conflict=on_conflict,
        actor=environment.owner(),
    )
    try:
        accepted = bool(experiment().accept(dict(run.summary)))
        reason = "accept(summary) returned False"
    except Exception as exc:
        accepted, reason = False, f"accept(summary) raised {type(exc).__name__}: {exc}"
    if not accepted:
        # Not an error: the experiment's own verdict. Said once, here, as it happens.
        reporter.note(
            f"not promoted: {experiment.__name__}.{reason}; the stack data is kept for "
            f"`omnilab promote {run.short_id}`"
        )
        return outcome(status="declined", reason=reason, data="kept")
    try:
        return promote(run, on_conflict=on_conflict, settings=settings, reporter=reporter)
    except OmnilabError as exc:
        result = getattr(exc, "result", None)
        if result is None:
            result = outcome(status="failed", error=str(exc))
        return result
