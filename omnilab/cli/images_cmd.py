"""``omnilab images``: build the images the docker runtime needs, without a registry."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from omnilab.cli import render

app = typer.Typer(
    help="Build and list the images omnilab makes from Debian packages (air-gapped hosts).",
    no_args_is_help=True,
)


@app.command("build")
def build(
    names: list[str] = typer.Argument(
        None,
        metavar="[IMAGE]...",
        help="base, redis, postgres, qdrant, experiments, codegen. Default: base redis "
        "postgres, and qdrant when a Qdrant binary is found.",
    ),
    binary: Path = typer.Option(
        None,
        "--binary",
        metavar="PATH",
        help="The Qdrant server binary for `qdrant` (the Linux build of its release for "
        "this machine's architecture). Default: OMNILAB_QDRANT_BINARY, else `qdrant` on PATH.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Rebuild the named images even when they are current."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show every line of debootstrap and of each build."
    ),
) -> None:
    """Build images from Debian packages: no registry needed, only a Debian mirror.

    The base is a minimal Debian made with debootstrap (root, and `apt-get install
    debootstrap`) and imported with `docker import`; Redis and PostgreSQL are built on it
    from Debian's packages and behave like the official images (POSTGRES_PASSWORD,
    `redis-server --requirepass`...). No Debian package has Qdrant: its image is built on
    the same base from a server binary you give (a release downloaded elsewhere), of the
    version omnilab pins. An image is rebuilt only when it is missing, its recipe in
    dockerfiles/ (or the binary) changed, or with --force. Once built, the docker runtime
    uses them by default (OMNILAB_IMAGE_<SERVICE> still overrides).

    Examples:

      omnilab images build

      OMNILAB_DEBIAN_MIRROR=http://mirror.internal/debian omnilab images build

      omnilab images build qdrant --binary ./qdrant

      omnilab images build postgres --force
    """
    from omnilab.progress import Reporter
    from omnilab.runtimes.docker.images import build as build_images

    results = build_images(names or None, Reporter(), force=force, verbose=verbose, binary=binary)
    for result in results:
        took = f" in {result.seconds:.0f}s" if result.seconds is not None else ""
        render.out.print(f"{result.spec.tag}  {result.action}{took}  ({result.size_mib} MiB)")


@app.command("ls")
def ls(json_output: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """The images omnilab can build, and whether this engine has them (present,
    missing, or stale: built from an older recipe).

    Examples:

      omnilab images ls

      omnilab images ls --json
    """
    from omnilab.runtimes.docker.engine import connect
    from omnilab.runtimes.docker.images import catalog, status

    client = connect()
    found = [status(client, spec) for spec in catalog().values()]
    if json_output:
        render.print_json([s.to_dict() for s in found])
        return
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    for column in ("image", "tag", "state", "size"):
        table.add_column(column, no_wrap=True)
    table.add_column("what")
    for s in found:
        state = "[red]missing[/]"
        if s.present:
            state = f"[yellow]stale: {s.stale}[/]" if s.stale else "[green]present[/]"
        size = f"{s.size_mib} MiB" if s.size_mib is not None else "-"
        table.add_row(s.spec.name, s.spec.tag, state, size, s.spec.description)
    render.out.print(table)
