"""``omnilab ui``: the web UI alone, read-only, on the local tracking store."""

from __future__ import annotations

import typer
from rich.markup import escape

from omnilab.cli import render
from omnilab.cli.serve_cmd import _is_loopback


def ui(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on: this machine only by default. There is no sign-in: "
        "anyone who can reach another address can read every run.",
    ),
    port: int = typer.Option(8766, "--port", "-p", min=1, max=65535, help="Port."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn's log level."),
) -> None:
    """Browse past runs in a web browser: read-only, on this project's tracking store.

    Like `mlflow ui`: no queue, no worker and no Redis needed. It serves the runs table
    (filters, sorting, pages), each run (status, timings, params, summary, environment,
    services, a chart per metric, artifacts to download, its log), comparisons, the
    experiments that have runs, workers and promotions.

    Nothing can be queued, cancelled or promoted from it, and there is no sign-in: it is
    local and read-only, listening on 127.0.0.1 (this machine) unless --host says
    otherwise. To act from a browser, use `omnilab serve` (its pages sign in with an
    API key whose scopes decide what they offer).

    The tracking store is the one `omnilab runs ls` reads: OMNILAB_TRACKING_URL, else the
    embedded one under .omnilab/ at the project root.

    Examples:

      omnilab ui

      omnilab ui --port 9000
    """
    import uvicorn

    from omnilab.queue.settings import get_queue_settings
    from omnilab.tracking.store import TrackingStore

    settings = get_queue_settings()
    note = render.err.print
    with TrackingStore.open(settings) as store:  # a clear error now, not at the first page
        note(f"tracking store: {escape(store.location)}")
    if not _is_loopback(host):
        note(
            f"[yellow]warning[/]: listening on {escape(host)}, reachable from other machines, "
            "with no sign-in: anyone who reaches it can read every run"
        )
    note(f"read-only web UI on http://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.run(
        "omnilab.web.app:create_ui_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
    )
