"""``omnilab promote``, ``rollback``, ``discard`` and ``promotions``: a run's results into
production, planned, atomic, verified and recorded."""

from __future__ import annotations

from enum import Enum

import typer
from rich.markup import escape

from omnilab.cli import render


# A plain Enum: in a str one, the member `replace` would hide str.replace. Typer offers the
# values; the commands pass on `.value`.
class OnConflict(Enum):
    fail = "fail"
    replace = "replace"
    version = "version"


ON_CONFLICT_HELP = (
    "When production already holds a different item of that name: fail (the default; "
    "nothing changes), replace it (the old one is kept for rollback), or version (promote "
    "beside it as NAME_v2...)."
)

promotions_app = typer.Typer(
    help="List, inspect, prune and recover recorded promotions.", no_args_is_help=True
)


def promote(
    run: str = typer.Argument(..., metavar="RUN", help="Run id, or its first characters."),
    dry_run: bool = typer.Option(
        False, "--dry-run", "-n", help="Print the plan (what is created, replaced, how much)."
    ),
    on_conflict: OnConflict = typer.Option(OnConflict.fail, "--on-conflict", help=ON_CONFLICT_HELP),
    actor: str = typer.Option(
        None, "--actor", help="Who promotes, as recorded (default: user@host)."
    ),
    json_output: bool = typer.Option(False, "--json", help="The plan or outcome as JSON."),
) -> None:
    """Copy what a run's experiment declares in `promotes` into production.

    Production is QDRANT_URL, REDIS_URL and POSTGRES_URL (file:///path: Qdrant local mode).

    Each item is copied aside and verified (counts, checksums), then switched atomically.

    A failure anywhere leaves production as it was; a second promotion does nothing.

    A run whose data is kept on another host is promoted (and planned) by that host's
    worker: this command hands it over and waits for the outcome.

    Examples:

      omnilab promote 3fa2c1 --dry-run

      omnilab promote 3fa2c1 --on-conflict replace

      omnilab promotions ls ; omnilab rollback 9c1d2e
    """
    from omnilab.cli import promote_render
    from omnilab.queue.handover import promote as do_promote
    from omnilab.queue.settings import get_queue_settings
    from omnilab.redact import redact_environment
    from omnilab.services.promotable import PromotionError

    try:
        result = do_promote(
            run,
            dry_run=dry_run,
            on_conflict=on_conflict.value,
            actor=actor,
            settings=get_queue_settings(),
            reporter=render.progress_reporter(json_output),
        )
    except PromotionError as exc:
        partial = getattr(exc, "result", None)
        if partial is None:
            raise
        if json_output:
            render.print_json(partial.model_dump(mode="json"))
            raise  # its one line on stderr, from the command's error handling
        promote_render.promotion_result(partial)
        # The plan above gives each refused item's reason and fix: the error line sums
        # up instead of repeating them; any other error is printed here, once.
        line = redact_environment(promote_render.error_line(partial))
        render.err.print(f"[red]error:[/] {escape(line)}")
        raise typer.Exit(exc.exit_code) from None
    if json_output:
        render.print_json(result.model_dump(mode="json"))
    else:
        promote_render.promotion_result(result)


def rollback(
    promotion: str = typer.Argument(
        ..., metavar="PROMOTION", help="Promotion id, or its first characters."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Say what would be restored."),
    force: bool = typer.Option(
        False, "--force", help="Roll back even though production changed since the promotion."
    ),
    json_output: bool = typer.Option(False, "--json", help="The outcome as JSON."),
) -> None:
    """Put back what a promotion replaced, and remove what it created.

    Each item switches back atomically.

    Refused when production changed since (unless --force) or a later promotion
    replaced the same item.

    A promotion carried out on another host is rolled back by that host's worker (it
    went into production as that host configures it): this command hands it over.

    Examples:

      omnilab rollback 9c1d2e --dry-run

      omnilab rollback 9c1d2e
    """
    from omnilab.cli import promote_render
    from omnilab.queue.handover import rollback as do_rollback
    from omnilab.queue.settings import get_queue_settings

    reporter = render.progress_reporter(json_output)
    result = do_rollback(
        promotion,
        dry_run=dry_run,
        force=force,
        settings=get_queue_settings(),
        reporter=reporter,
    )
    if json_output:
        render.print_json(result.model_dump(mode="json"))
    else:
        promote_render.rollback_result(result)


def discard(
    run: str = typer.Argument(
        None, metavar="[RUN]", help="Run id, or its first characters.", show_default=False
    ),
    expired: bool = typer.Option(
        False, "--expired", help="Instead: remove every kept data past OMNILAB_RETENTION_DAYS."
    ),
) -> None:
    """Give up promoting a run: remove the stack data kept for it.

    Data kept on another host is removed by that host's worker; --expired removes this
    host's only (each worker removes its own host's, too).

    Examples:

      omnilab discard 3fa2c1

      omnilab discard --expired
    """
    from omnilab.errors import UsageError
    from omnilab.progress import QuietReporter, Reporter
    from omnilab.promote import retention
    from omnilab.queue.handover import discard as do_discard
    from omnilab.queue.settings import get_queue_settings
    from omnilab.tracking.store import TrackingStore

    if bool(run) == expired:
        raise UsageError("give a RUN to discard, or --expired (not both)")
    if expired:
        with TrackingStore.open() as store:
            gone = retention.sweep(store, Reporter())
        render.out.print(f"{len(gone)} runs' expired stack data removed")
        return
    # Its result is said once, below (the reporter would say it too).
    info = do_discard(run, settings=get_queue_settings(), reporter=QuietReporter())
    label = render.run_label(info["run_id"], info.get("experiment"), info.get("name"))
    render.out.print(f"{label}: stack data discarded ({escape(str(info['path']))})")


@promotions_app.command("ls")
def ls(
    run: str = typer.Option(None, "--run", "-r", help="Only this run's promotions."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many, newest first."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """List promotions, newest first: run, when, each item's target, count and checksum.

    Examples:

      omnilab promotions ls

      omnilab promotions ls --run 3fa2c1 --json
    """
    from omnilab.cli import promote_render
    from omnilab.promote.records import PromotionStore
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        run_id = store.get_run(run).id if run else None
        records = PromotionStore(store).list(run_id=run_id, limit=limit)
    if json_output:
        render.print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        render.err.print("no promotions recorded yet; try: omnilab promote RUN --dry-run")
        return
    promote_render.promotions_listing(records)


@promotions_app.command("show")
def show(
    promotion: str = typer.Argument(..., metavar="PROMOTION", help="Promotion id or prefix."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """One promotion in full: plan, counts, checksums, what it replaced and where.

    Examples:

      omnilab promotions show 9c1d2e

      omnilab promotions show 9c1d2e --json
    """
    from omnilab.cli import promote_render
    from omnilab.promote.records import PromotionStore
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        record = PromotionStore(store).get(promotion)
    if json_output:
        render.print_json(record.model_dump(mode="json"))
    else:
        promote_render.promotion_details(record)


@promotions_app.command("recover")
def recover(
    json_output: bool = typer.Option(False, "--json", help="The promotions finished, as JSON."),
) -> None:
    """Finish promotions whose process died (killed, crashed, its machine lost).

    Committed ones (every item staged and verified) are rolled forward.

    The others are undone: what they staged is removed.

    The API and workers do this within seconds, as does every promote and rollback.

    Example:

      omnilab promotions recover
    """
    from omnilab.config import get_settings
    from omnilab.progress import Reporter
    from omnilab.promote.recovery import recover as do_recover

    recovery = do_recover(get_settings(), Reporter())
    if json_output:
        render.print_json([r.model_dump(mode="json") for r in recovery.finished])
    else:
        for record in recovery.finished:
            status = record.status.replace("_", " ")
            render.out.print(f"promotion {record.short_id}: {status}; {record.recovered}")
        if not recovery.finished and not recovery.stuck:
            render.out.print("no interrupted promotion")
    recovery.raise_if_stuck()


@promotions_app.command("prune")
def prune(
    promotion: str = typer.Argument(..., metavar="PROMOTION", help="Promotion id or prefix."),
) -> None:
    """Delete the production data a promotion replaced (kept for rollback). No rollback
    of that promotion is possible afterwards.

    Example:

      omnilab promotions prune 9c1d2e
    """
    from omnilab.promote import prune as do_prune

    record = do_prune(promotion)
    render.out.print(f"promotion {record.short_id}: replaced data deleted")


def promotion_after_run(run: object, json_output: bool) -> int:
    """What ``omnilab run --promote`` prints after the run; returns the exit status."""
    from omnilab.cli import promote_render

    result = getattr(run, "promotion", None)
    if result is None or result.status == "declined":
        # Declined by accept(summary): the experiment's verdict, said during the run.
        return 0
    if not json_output:
        promote_render.promotion_result(result)
    if result.status in ("failed", "refused"):
        from omnilab.redact import redact_environment

        # Once: the plan printed above gives each refused item's reason.
        line = redact_environment(promote_render.error_line(result))
        render.err.print(f"[red]error:[/] the run succeeded, but {escape(line)}")
        return 1
    return 0
