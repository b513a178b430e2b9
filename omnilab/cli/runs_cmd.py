"""``omnilab runs``: list and inspect recorded runs."""

from __future__ import annotations

import typer

from omnilab.cli import render

app = typer.Typer(help="List and inspect recorded runs.", no_args_is_help=True)


@app.command("ls")
def ls(
    experiment: str = typer.Option(None, "--experiment", "-e", help="Only this experiment."),
    status: str = typer.Option(
        None, "--status", "-s", help="Only runs with this status (running, succeeded, failed...)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many, newest first."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """List recent runs, newest first."""
    from omnilab.errors import UsageError
    from omnilab.tracking.records import RunStatus
    from omnilab.tracking.store import TrackingStore

    allowed = RunStatus.__args__  # type: ignore[attr-defined]
    if status and status not in allowed:
        raise UsageError(f"--status {status!r}: choose one of {', '.join(allowed)}")
    with TrackingStore.open() as store:
        store.reconcile_orphans()
        records = store.list_runs(experiment=experiment, status=status, limit=limit, offset=offset)
    if json_output:
        render.print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        render.err.print("no runs recorded yet; try: omnilab run experiments/hello.py")
        render.runs_elsewhere()
        return
    render.out.print(render.runs_table(records))


@app.command("show")
def show(
    run: str = typer.Argument(..., metavar="RUN", help="Run id, or its first characters."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Show one run: params, summary, metrics, services, timings, artifacts, error."""
    from omnilab.tracking.run import Run
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        store.reconcile_orphans()
        result = Run.from_store(store, store.get_run(run))
    if json_output:
        render.print_json(result.to_dict())
    else:
        render.run_details(result)
