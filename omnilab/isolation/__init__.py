"""Where an experiment's own code runs: in omnilab's process (``host``) or in a container
of the experiments image on its run's network (``container``).

The two sides of a container-isolated run agree on what lives where, here: the start
message (experiment, params, run id, the services' addresses and secrets) goes to the
container's stdin, so no secret is written to disk or shows in ``docker inspect``;
metrics come back as JSON lines in a file of the mounted run folder, which the host
follows; the outcome (summary or traceback) in a result file; output as the container's
stdout and stderr.
"""

from __future__ import annotations

from typing import Literal

from omnilab.errors import UsageError

Isolation = Literal["host", "container"]
ISOLATIONS: tuple[str, ...] = ("host", "container")

#: Inside the container: the experiment's folder (read-only) and the run's folder.
EXPERIMENT_DIR = "/omnilab/experiment"
RUN_DIR = "/omnilab/run"
#: The run folder's subfolder both sides exchange files through (not an artifact).
IO_FOLDER = "container"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"


def check_isolation(value: str) -> Isolation:
    """``value`` if it names an isolation; a one-line UsageError otherwise."""
    if value not in ISOLATIONS:
        raise UsageError(f"unknown isolation {value!r}: choose host or container")
    return value  # type: ignore[return-value]


__all__ = [
    "EXPERIMENT_DIR",
    "IO_FOLDER",
    "ISOLATIONS",
    "METRICS_FILE",
    "RESULT_FILE",
    "RUN_DIR",
    "Isolation",
    "check_isolation",
]
