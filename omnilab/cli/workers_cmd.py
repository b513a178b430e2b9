"""``omnilab workers``: every worker host, alive or not, what it offers and what it runs."""

from __future__ import annotations

import typer


def workers(
    everything: bool = typer.Option(
        False,
        "--all",
        "-a",
        help="Every worker recorded (the latest 1,000), not only the live ones and the "
        "last of each host that has none.",
    ),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Show the workers: per host, whether its worker is alive (its last heartbeat),
    the runtimes that work there, its GPUs (model, memory), its labels, the runs it is
    running now and the queues it listens to.

    Placement reads the same facts: a run whose Experiment.requires asks for a GPU, a
    runtime, labels or a host goes to the queue of a host whose live workers offer all
    of it ('<queue>@<host>'); when none does, the run waits for capacity and `omnilab
    runs show RUN` says why. A worker is taken for dead after OMNILAB_WORKER_TTL seconds
    (30) without a heartbeat ("lost"), until a sweep ends it ("stopped").

    Reads the tracking store (OMNILAB_TRACKING_URL), as the workers and the API do.

    Examples:

      omnilab workers

      omnilab workers --all

      omnilab workers --json | jq '.[] | select(.alive) | .host'
    """
    from omnilab.cli import render
    from omnilab.queue.settings import get_queue_settings
    from omnilab.tracking.store import TrackingStore
    from omnilab.tracking.workers import WorkerStore

    settings = get_queue_settings()
    with TrackingStore.open(settings) as store:
        views = WorkerStore(store).overview(settings.worker_ttl, everything=everything)
    if json_output:
        render.print_json(
            [
                {**v.model_dump(mode="json", exclude={"pid_start"}), "alive": v.status == "alive"}
                for v in views
            ]
        )
        return
    if not views:
        render.err.print("no worker has registered yet: start one with `omnilab worker`")
        return
    render.workers(views, settings.worker_ttl)
