"""``omnilab api-key``: keys for the HTTP API."""

from __future__ import annotations

import typer
from rich.markup import escape

from omnilab.cli import render

app = typer.Typer(help="Make, list and revoke API keys for `omnilab serve`.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", "-n", help="Who or what uses it, e.g. 'ci'."),
    scope: list[str] = typer.Option(
        ["read", "run"],
        "--scope",
        "-s",
        help="What it may do (repeat): read (look at experiments and runs), run (queue and "
        "cancel runs), promote (promote runs into production).",
    ),
) -> None:
    """Make a key and print it once; only a hash of it is stored.

    The key alone goes to stdout, so that it can be captured.

    Examples:

      omnilab api-key create --name me

      KEY=$(omnilab api-key create --name ci --scope read --scope run)

      curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8765/v1/experiments
    """
    from omnilab import environment
    from omnilab.tracking.api_keys import ApiKeyStore
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        record, key = ApiKeyStore(store).create(name, scope, created_by=environment.owner())
    render.err.print(
        f"API key {record.id} ({record.name}), scopes: {', '.join(record.scopes)}. "
        "Shown once: keep it now."
    )
    print(key)


@app.command("ls")
def ls(
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """List keys (ids, names, scopes, last use); never the keys themselves.

    Examples:

      omnilab api-key ls

      omnilab api-key ls --all --json
    """
    from rich.table import Table

    from omnilab.tracking.api_keys import ApiKeyStore
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        records = ApiKeyStore(store).list_keys(include_revoked=all_keys)
    if json_output:
        render.print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        render.err.print("no API keys; make one with: omnilab api-key create --name me")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "scopes", "created", "last used", "revoked"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.id,
            escape(r.name),
            ",".join(r.scopes),
            render.when(r.created_at),
            render.when(r.last_used_at),
            render.when(r.revoked_at) if r.revoked_at else "",
        )
    render.out.print(table)


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., metavar="ID", help="Its id (see `omnilab api-key ls`)."),
) -> None:
    """Revoke a key: requests with it get 401 (within OMNILAB_API_KEY_CACHE seconds).

    Example:

      omnilab api-key revoke 3fa2c1d8e4b7
    """
    from omnilab.tracking.api_keys import ApiKeyStore
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        record = ApiKeyStore(store).revoke(key_id)
    render.err.print(f"API key {record.id} ({escape(record.name)}) revoked")
