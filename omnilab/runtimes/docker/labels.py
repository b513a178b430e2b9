"""Labels on everything the docker runtime creates, and how to read them back.

Teardown, the reaper and ``omnilab gc`` find a stack's containers, network and volumes
by these labels alone, never by name: a name can be reused, a label says whose it is.
The owner labels (host, pid, process start time) and the state file's path let ``gc``
decide, long after the fact, whether the process that made an object is gone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omnilab.errors import UsageError
from omnilab.host import host_name
from omnilab.version import __version__

if TYPE_CHECKING:
    from omnilab.runtimes.state import StackState

PREFIX = "io.omnilab"
#: On every object omnilab creates; what ``gc`` looks for (older versions set it too).
MANAGED = f"{PREFIX}.managed"
STACK = f"{PREFIX}.stack"
RUN = f"{PREFIX}.run"
SERVICE = f"{PREFIX}.service"
OWNER_HOST = f"{PREFIX}.owner.host"
OWNER_PID = f"{PREFIX}.owner.pid"
OWNER_START = f"{PREFIX}.owner.start"
STATE_FILE = f"{PREFIX}.state-file"
VERSION = f"{PREFIX}.version"
#: Volumes every stack shares (Ollama's models): never removed by teardown or gc.
SHARED = f"{PREFIX}.shared"
#: On images omnilab builds: which catalog entry, and the recipe's fingerprint.
IMAGE = f"{PREFIX}.image"
RECIPE = f"{PREFIX}.recipe"
BASE_ID = f"{PREFIX}.base-id"


def parse_extra(text: str | None) -> dict[str, str]:
    """``OMNILAB_LABELS`` (``key=value,key2=value2``): labels added to every object.

    They also scope ``omnilab gc``: it only looks at objects that carry all of them, so
    a CI job (or a test) cleaning up after itself never touches anyone else's.
    """
    labels: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"OMNILAB_LABELS: {item!r} is not key=value")
        if key.strip().startswith(PREFIX):
            raise UsageError(f"OMNILAB_LABELS: {key.strip()!r} is reserved for omnilab")
        labels[key.strip()] = value.strip()
    return labels


def extra_labels() -> dict[str, str]:
    return parse_extra(os.environ.get("OMNILAB_LABELS"))


def stack_labels(state: StackState, service: str | None = None) -> dict[str, str]:
    """Labels for an object of ``state``'s stack (``service`` for a service's own)."""
    labels = {
        **extra_labels(),
        MANAGED: "true",
        STACK: state.id,
        OWNER_HOST: state.host,
        OWNER_PID: str(state.owner_pid),
        OWNER_START: "" if state.owner_start is None else str(state.owner_start),
        STATE_FILE: str(state.path or ""),
        VERSION: __version__,
    }
    if state.run_id:
        labels[RUN] = state.run_id
    if service:
        labels[SERVICE] = service
    return labels


def shared_labels(service: str) -> dict[str, str]:
    """A volume every stack shares: no scope labels, it belongs to no one stack."""
    return {MANAGED: "true", SHARED: "true", SERVICE: service}


def label_filter(labels: Mapping[str, str]) -> dict[str, Any]:
    """A docker ``filters`` argument matching objects that carry every one of ``labels``."""
    return {"label": [f"{k}={v}" if v is not None else k for k, v in labels.items()]}


def this_host() -> str:
    return host_name()
