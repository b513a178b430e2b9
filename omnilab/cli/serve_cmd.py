"""``omnilab serve``: the HTTP API."""

from __future__ import annotations

import ipaddress
import os
import secrets

import typer
from rich.markup import escape

from omnilab.cli import render


def serve(
    host: str = typer.Option(
        None,
        "--host",
        help="Address to listen on. Default: OMNILAB_API_HOST or 127.0.0.1 (this machine "
        "only). Anything else exposes the API to the network: use TLS.",
        show_default=False,
    ),
    port: int = typer.Option(
        None,
        "--port",
        "-p",
        min=1,
        max=65535,
        help="Port. Default: OMNILAB_API_PORT or 8765.",
        show_default=False,
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Server processes (they share one queue and store)."
    ),
    ssl_certfile: str = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM)."),
    ssl_keyfile: str = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve the HTTP API and the web UI: queue runs, follow their logs, read results,
    cancel, promote.

    Runs are recorded in the tracking store and queued on Redis (REDIS_URL) for
    `omnilab worker` processes to run.
    Only experiments of OMNILAB_EXPERIMENTS_DIR (default: experiments/) can be queued.
    Every endpoint but /healthz needs an API key: omnilab api-key create --name me

    The OpenAPI document is at /openapi.json, interactive docs at /docs. The web UI is
    at / (sign in with an API key); its sessions are signed with OMNILAB_WEB_SECRET, or
    with a random secret per start when unset (sessions then end with the server).

    Examples:

      omnilab serve

      omnilab serve --port 9000 --workers 2

      omnilab serve --host 0.0.0.0 --ssl-certfile cert.pem --ssl-keyfile key.pem
    """
    import uvicorn

    from omnilab.catalog import Catalog
    from omnilab.queue.broker import Broker, QueueUnavailable
    from omnilab.queue.settings import get_queue_settings
    from omnilab.redact import redact_url
    from omnilab.tracking.api_keys import ApiKeyStore
    from omnilab.tracking.store import TrackingStore

    settings = get_queue_settings()
    host = host or settings.api_host
    port = port or settings.api_port
    note = render.err.print
    with TrackingStore.open(settings) as store:  # a clear error now, not at the first request
        note(f"tracking store: {store.location}")
        if not ApiKeyStore(store).list_keys():
            note(
                "[yellow]no API key yet[/]: every request will get 401; "
                "make one with `omnilab api-key create --name me`"
            )
    broker = Broker(settings.redis_url, settings.queue)
    try:
        broker.ping()
        note(f"queue: {settings.queue} on {escape(redact_url(settings.redis_url))}")
    except QueueUnavailable as exc:
        note(f"[yellow]warning[/]: {escape(str(exc))}; runs are recorded and sent when it answers")
    finally:
        broker.close()
    catalog = Catalog(settings.experiments_dir)
    note(f"experiments in {catalog.folder}: {', '.join(catalog.names()) or 'none'}")
    for problem in catalog.problems:
        note(f"[yellow]warning[/]: {escape(problem)}")
    if not _is_loopback(host):
        plain = "" if ssl_certfile else " without TLS: API keys would cross the network in clear"
        note(f"[yellow]warning[/]: listening on {host}, reachable from other machines{plain}")
    if workers > 1 and not settings.web_secret:
        # One random secret for every server process, so a session works on all of them.
        os.environ["OMNILAB_WEB_SECRET"] = secrets.token_urlsafe(32)
    scheme = "https" if ssl_certfile else "http"
    note(f"serving on {scheme}://{host}:{port} (web UI: /, OpenAPI: /openapi.json, docs: /docs)")
    uvicorn.run(
        "omnilab.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        log_level=log_level,
        proxy_headers=False,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
