"""``omnilab compose export``: the experiment stack as a docker-compose file."""

from __future__ import annotations

from pathlib import Path

import typer

from omnilab.cli import render

app = typer.Typer(help="The experiment stack as a docker-compose file.", no_args_is_help=True)


@app.command("export")
def export(
    target: str = typer.Argument(
        None,
        metavar="[FILE[:CLASS]]",
        help="An experiment: only the services it uses. Default: all four.",
        show_default=False,
    ),
    output: Path = typer.Option(
        Path("compose/docker-compose-experiments.yml"),
        "--output",
        "-o",
        help="Where to write the compose file; its env file goes beside it.",
    ),
) -> None:
    """Write compose/docker-compose-experiments.yml from omnilab's service specs, its
    GPU reservations in compose/docker-compose-experiments.gpu.yml (add it with -f on
    hosts with NVIDIA GPUs), and compose/.env.experiments with random secrets when it is
    missing.

    Examples:

      omnilab compose export

      omnilab compose export experiments/hello.py

      docker-compose --env-file compose/.env.experiments \\
          -f compose/docker-compose-experiments.yml up -d
    """
    from omnilab.compose import export as write

    path, gpu_file, env_path, wrote = write(target, output)
    render.err.print(f"wrote {path}")
    if gpu_file is not None:
        render.err.print(f"wrote {gpu_file} (GPU reservations, for hosts with NVIDIA GPUs)")
    if wrote:
        render.err.print(f"wrote {env_path} (random secrets, mode 0600; never commit it)")
    render.err.print(f"start it: docker-compose --env-file {env_path} -f {path} up -d")
    if gpu_file is not None:
        render.err.print(f"  with GPUs: add -f {gpu_file}")
