"""``omnilab images``: build the images the docker runtime needs, without a registry."""

from __future__ import annotations

import textwrap
from pathlib import Path

import typer
from rich.text import Text

from omnilab.cli import render

app = typer.Typer(
    help="Build and list the images omnilab makes from Debian packages (air-gapped hosts).",
    no_args_is_help=True,
)


#: The names ``build`` takes, from the image catalog.
IMAGE_NAMES_HELP = render.image_names_help()


@app.command("build")
def build(
    names: list[str] = typer.Argument(
        None,
        metavar="[IMAGE]...",
        help=IMAGE_NAMES_HELP,
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
    from omnilab.runtimes.docker.images import build as build_images

    reporter = render.progress_reporter()
    results = build_images(names or None, reporter, force=force, verbose=verbose, binary=binary)
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
    # One line per image (its tag, never cut), and below it what it is, wrapped to the
    # terminal: readable at 80 columns.
    width = max(len("image"), *(len(s.spec.tag) for s in found))
    render.out.print(f"[bold]{'image':{width}s}  {'state':7s}  size[/]")
    for s in found:
        state, style = ("missing", "red")
        if s.present:
            state, style = ("stale", "yellow") if s.stale else ("present", "green")
        size = f"{s.size_mib} MiB" if s.size_mib is not None else "-"
        line = Text(f"{s.spec.tag:{width}s}  ")
        line.append(f"{state:7s}", style=style)
        line.append(f"  {size}")
        render.out.print(line)
        about = f"{s.spec.name}: {s.spec.description}"
        if s.stale:
            about += f" (stale: {s.stale}; omnilab images build {s.spec.name})"
        elif not s.present:
            about += f" (build it: omnilab images build {s.spec.name})"
        for text in textwrap.wrap(about, max(render.out.width - 4, 20)):
            render.out.print(Text(f"    {text}", style="dim"))
