"""``omnilab worker``: run queued runs."""

from __future__ import annotations

import typer


def worker(
    concurrency: int = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        help="Runs at a time. Default: one per GPU given, or 1 without GPUs.",
        show_default=False,
    ),
    gpus: str = typer.Option(
        "all",
        "--gpus",
        help="GPUs to hand out, one per run at a time: 'all' (those this host shows, "
        "honouring CUDA_VISIBLE_DEVICES), 'none', or indexes/UUIDs like 0,1.",
    ),
    queue: str = typer.Option(
        None,
        "--queue",
        "-q",
        help="The shared queue's name in Redis; this host's own are '<name>@<host>' and "
        "'<name>-gpu@<host>'. Default: OMNILAB_QUEUE or 'omnilab'.",
        show_default=False,
    ),
    label: list[str] = typer.Option(
        [],
        "--label",
        "-l",
        metavar="KEY=VALUE",
        help="A label of this worker (repeatable), added to OMNILAB_WORKER_LABELS "
        "('zone=a,disk=ssd'): runs whose Experiment.requires names it come to this host.",
    ),
) -> None:
    """Take runs queued through the HTTP API and run them, each on its own stack.

    Runs come from Redis (REDIS_URL); their records live in the tracking store.
    Several workers, on one host or several, can share one queue.
    Only experiments in OMNILAB_EXPERIMENTS_DIR (default: experiments/) can run.

    A worker registers what it offers: its host (OMNILAB_HOST, else the system's name),
    the runtimes that work there, its GPUs and its labels. Runs that require nothing
    come from the shared queue; runs whose Experiment.requires asks for a GPU, a
    runtime, labels or a host come from this host's own queue ('<queue>@<host>') when
    it offers all of it. `omnilab workers` shows what each worker offers.

    Ctrl-C once: the runs in progress finish, no new ones start.
    Twice: they are stopped now, their stacks torn down, and each run is queued
    again or failed, per its retries.

    Examples:

      omnilab worker

      omnilab worker --concurrency 4 --gpus 0,1

      omnilab worker --label zone=a --label disk=ssd

      REDIS_URL=redis://:secret@queue-host:6379/0 omnilab worker -q team-a
    """
    from omnilab.queue.settings import get_queue_settings
    from omnilab.queue.supervisor import Supervisor, parse_gpus
    from omnilab.requirements import parse_labels

    settings = get_queue_settings()
    labels = {**settings.labels, **parse_labels(label, "--label")}
    if queue:
        settings = settings.model_copy(update={"queue": _queue_name(queue)})
    supervisor = Supervisor(settings, concurrency=concurrency, gpus=parse_gpus(gpus), labels=labels)
    raise typer.Exit(supervisor.run())


def _queue_name(value: str) -> str:
    import re

    from omnilab.errors import UsageError

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise UsageError(f"--queue {value!r}: use 1 to 64 letters, digits, '_', '.' or '-'")
    return value
