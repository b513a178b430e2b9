"""``omnilab runs``: list, inspect, compare and delete recorded runs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from omnilab.cli import render
from omnilab.host import host_name

if TYPE_CHECKING:
    from omnilab.tracking.records import RunRecord
    from omnilab.tracking.store import TrackingStore

app = typer.Typer(help="List, inspect, compare and delete recorded runs.", no_args_is_help=True)


@app.command("ls")
def ls(
    experiment: str = typer.Option(None, "--experiment", "-e", help="Only this experiment."),
    status: str = typer.Option(
        None, "--status", "-s", help="Only runs with this status (running, succeeded, failed...)."
    ),
    tag: list[str] = typer.Option(
        [], "--tag", "-t", help="Only runs with this tag (repeat: runs with every one)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many, newest first."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """List recent runs, newest first: one line each, with their params as columns (as
    many as the terminal's width allows; those that differ between the runs first).

    Examples:

      omnilab runs ls

      omnilab runs ls --experiment Hello --status failed

      omnilab runs ls --tag baseline -n 50

      omnilab runs ls --json
    """
    from omnilab.errors import UsageError
    from omnilab.tracking.records import RunStatus
    from omnilab.tracking.store import TrackingStore

    allowed = RunStatus.__args__  # type: ignore[attr-defined]
    if status and status not in allowed:
        raise UsageError(f"--status {status!r}: choose one of {', '.join(allowed)}")
    with TrackingStore.open() as store:
        store.reconcile_orphans()
        records = store.list_runs(
            experiment=experiment, status=status, tags=tag, limit=limit, offset=offset
        )
    if json_output:
        render.print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        given = [
            f"{flag} {value}"
            for flag, value in (
                ("--experiment", experiment),
                ("--status", status),
                *(("--tag", t) for t in tag),
            )
            if value
        ]
        if given:
            render.err.print(f"no runs match these filters ({escape(' '.join(given))})")
        elif offset:
            render.err.print(f"no runs after the first {offset}")
        else:
            render.err.print("no runs recorded yet; try: omnilab run experiments/hello.py")
        render.runs_elsewhere()
        return
    table, hidden = render.runs_table(records)
    render.out.print(table)
    if hidden:
        names = ", ".join(hidden[:4]) + (", ..." if len(hidden) > 4 else "")
        render.err.print(
            f"[dim]{len(hidden)} more params not shown ({escape(names)}): "
            "widen the terminal, or see `omnilab runs show ID`[/]"
        )
    render.runs_elsewhere(found=True)


@app.command("show")
def show(
    run: str = typer.Argument(..., metavar="RUN", help="Run id, or its first characters."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Show one run: params, summary, metrics, services, timings, artifacts, error; the
    host that ran it and its code (the experiment file's sha256); for a queued run, its
    queue and, when no live worker can take it, why ("waiting for capacity: ...").

    Examples:

      omnilab runs show 3fa2c1

      omnilab runs show 3fa2c1 --json | jq .summary
    """
    from omnilab.recorded import Run
    from omnilab.tracking.queued_runs import QueueStore
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        store.reconcile_orphans()
        result = Run.from_store(store, store.get_run(run))
        info = QueueStore(store).queue_info([result.id]).get(result.id)
    if json_output:
        data = result.to_dict()
        data["host"] = result.record.host
        data["queue"] = info.model_dump(mode="json") if info is not None else None
        render.print_json(data)
    else:
        render.run_details(result, info)


@app.command("get")
def get(
    run: str = typer.Argument(..., metavar="RUN", help="Run id, or its first characters."),
    path: str | None = typer.Argument(
        None,
        metavar="[PATH]",
        help="The artifact, as `omnilab runs show` lists it; omitted: every artifact.",
    ),
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="One artifact: the file to write (a folder: its name in it; - for stdout); "
        "default: its name in the working directory. Every artifact: the folder; "
        "default: the run's short id.",
    ),
) -> None:
    """Save a run's artifacts from wherever they are kept: the artifact store the run
    uploaded them to (OMNILAB_ARTIFACTS_URL when it ran), else its folder on this host.
    Each copy is checked against the sha256 recorded with the run; a mismatch is an
    error and the copy is removed.

    Examples:

      omnilab runs get 3fa2c1 plots/curve.csv

      omnilab runs get 3fa2c1 model.pt -o /tmp/model.pt

      omnilab runs get 3fa2c1 -o results/
    """
    import sys

    from omnilab.recorded import Run
    from omnilab.resources import approx_size
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        result = Run.from_store(store, store.get_run(run))
    if path is not None and output == "-":
        with result.open(path) as fh:
            while chunk := fh.read(1 << 20):
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    if path is not None:
        saved = result.save(path, output or Path.cwd())
        size = saved.stat().st_size
        render.err.print(f"saved {escape(path)} ({approx_size(size)}) to {escape(str(saved))}")
        return
    if not result.artifacts:
        render.err.print(f"run {escape(result.record.label)} has no artifacts")
        return
    folder = Path(output or result.short_id)
    paths = result.save_all(folder)
    total = sum(a.size for a in result.artifacts)
    render.err.print(
        f"saved {len(paths)} artifact(s) ({approx_size(total)}) to {escape(str(folder))}"
    )


@app.command("compare")
def compare(
    runs: list[str] = typer.Argument(
        ..., metavar="RUN", help="Two or more run ids, or their first characters."
    ),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Compare runs side by side: params, summaries and each metric's last value; rows
    that differ between the runs are marked with * (and in colour on a terminal).

    Examples:

      omnilab runs compare 3fa2c1 9c1d2e

      omnilab runs compare 3fa2c1 9c1d2e 77ab01 --json
    """
    from omnilab.errors import UsageError
    from omnilab.notebook.compare import compare as build

    if len(runs) < 2:
        raise UsageError("runs compare: give two runs or more (see `omnilab runs ls`)")
    comparison = build(runs, charts=False)
    if len(comparison.runs) < 2:
        raise UsageError(f"{' and '.join(runs)} are the same run: give two different runs")
    if json_output:
        render.print_json(
            {
                "runs": [r.id for r in comparison.runs],
                "rows": [
                    {"group": g, "name": n, "values": v, "differs": render.differs(v)}
                    for g, n, v in comparison.rows()
                ],
            }
        )
        return
    render.comparison(comparison)


@app.command("delete")
def delete(
    runs: list[str] = typer.Argument(
        ..., metavar="RUN", help="Run ids, or their first characters."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Also delete a run that is running or queued, whose stack data waits for "
        "promotion (the data is removed too), that was promoted (its promotion "
        "records go, and with them any rollback), or whose files the artifact store "
        "cannot remove now (they stay there).",
    ),
) -> None:
    """Delete runs: their records, metrics, artifacts records, their folders
    (artifacts and logs) on this host, and their files in the artifact store.

    Asks first, unless --yes. Refuses, unless --force, a run that is still running or
    queued, one whose stack data is kept for `omnilab promote`, and one that was
    promoted (its promotion records would go).

    Examples:

      omnilab runs delete 3fa2c1

      omnilab runs delete 3fa2c1 9c1d2e --yes
    """
    from omnilab.errors import UsageError
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        store.reconcile_orphans()
        records = list({r.id: r for r in (store.get_run(ref) for ref in runs)}.values())
        blocked = [(r, why) for r in records if (why := _why_not(store, r))]
        if blocked and not force:
            lines = [f"run {r.label}: {why}" for r, why in blocked]
            raise UsageError("; ".join(lines) + "; use --force to delete anyway")
        for record in records:
            render.out.print(
                f"run {escape(record.label)}  {record.experiment}  "
                f"{render.status_text(record.status)}  {render.when(record.created_at)}"
            )
        if not yes:
            what = "this run" if len(records) == 1 else f"these {len(records)} runs"
            try:
                agreed = typer.confirm(f"delete {what}?", default=False, err=True)
            except typer.Abort:  # no answer (stdin closed): no
                agreed = False
            if not agreed:
                render.err.print("nothing deleted (--yes deletes without asking)")
                raise typer.Exit(1)
        for record in records:
            render.out.print(escape(_delete(store, record, force)))


def _why_not(store: TrackingStore, record: RunRecord) -> str:
    """Why deleting ``record`` needs --force, or nothing."""
    from omnilab.promote.records import PromotionStore
    from omnilab.promote.retention import run_data

    if record.status in ("running", "queued"):
        return f"it is {record.status}"
    data = run_data(record)
    if data and data.get("state") == "kept":
        return f"its stack data waits for promotion at {data.get('path')}"
    if PromotionStore(store).list(run_id=record.id, limit=1):
        return "it was promoted (its promotion records would go, and any rollback)"
    return ""


def _counted(n: int, thing: str) -> str:
    return f"{n:,} {thing}" + ("" if n == 1 else "s")


def _delete(store: TrackingStore, record: RunRecord, force: bool) -> str:
    """Delete one run; returns what went, in words."""
    from omnilab.progress import Reporter
    from omnilab.promote.retention import release, run_data

    gone = []
    if record.artifacts_url:
        # Before the record: a store that refuses leaves the run as it was, to try again
        # (or, with --force, to delete the record and leave the files).
        from omnilab.artifacts import ArtifactError, store_at

        try:
            removed = store_at(record.artifacts_url).delete_run(record.id)
            gone.append(f"{_counted(removed, 'file')} in {record.artifacts_url}")
        except ArtifactError as exc:
            if not force:
                raise ArtifactError(f"{exc}; the run is kept (--force deletes it anyway)") from None
            gone.append(f"not its files in {record.artifacts_url} ({exc})")
    data = run_data(record)
    if data and data.get("state") == "kept":
        release(store, record, "discarded", Reporter())
        gone.append(f"stack data {data.get('path')}")
    counts = store.delete_run(record.id)
    gone.append(_counted(counts["metrics"], "metric point"))
    gone.append(_counted(counts["artifacts"], "artifact record"))
    if counts["promotions"]:
        gone.append(_counted(counts["promotions"], "promotion record"))
    folder = Path(record.run_dir) if record.run_dir else None
    here = (record.environment or {}).get("hostname") in (None, host_name())
    if folder is not None and here and folder.is_dir() and folder.name == record.id:
        shutil.rmtree(folder, ignore_errors=True)
        gone.append(f"folder {folder}")
    return f"run {record.label} deleted: record, {', '.join(gone)}"
