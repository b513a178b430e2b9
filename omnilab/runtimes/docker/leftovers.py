"""What ``omnilab gc`` finds of the docker runtime's: containers, networks and volumes
labelled ``io.omnilab.managed`` whose stack is not kept and whose owner is gone, or that
name no owner at all (older versions).

A kept stack (``--keep``, ``omnilab stack up``) is never touched: ``omnilab stack down``
removes it. Neither is the volume stacks share for Ollama's models, nor an object whose
owner ran on another host (its processes cannot be seen from here). With
``OMNILAB_LABELS`` set, only objects carrying those labels are considered.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from omnilab.errors import OmnilabError
from omnilab.procs import owner_alive
from omnilab.runtimes.base import Leftover
from omnilab.runtimes.docker import engine, labels
from omnilab.runtimes.state import StackState


def owner_gone(object_labels: dict[str, str]) -> str | None:
    """Why the object's stack is abandoned, or None when it is in use, kept, or not ours
    to judge."""
    if object_labels.get(labels.SHARED):
        return None
    state_file = object_labels.get(labels.STATE_FILE)
    if state_file and Path(state_file).is_file():
        with contextlib.suppress(OSError, ValueError, TypeError):
            state = StackState.load(Path(state_file))
            if state.keep or state.owner_is_alive():
                return None
            return f"owner pid {state.owner_pid} is gone"
    pid = object_labels.get(labels.OWNER_PID)
    if not pid:
        return "no owner recorded (left by an older omnilab)"
    host = object_labels.get(labels.OWNER_HOST)
    if host and host != labels.this_host():
        return None  # another machine's process: cannot be checked from here
    start = object_labels.get(labels.OWNER_START)
    try:
        alive = owner_alive(int(pid), int(start) if start else None)
    except ValueError:
        return "unreadable owner labels"
    return None if alive else f"owner pid {pid} is gone"


def _find(client: Any) -> list[tuple[Leftover, Any]]:
    scope = {**labels.extra_labels(), labels.MANAGED: None}
    selector = labels.label_filter(scope)  # type: ignore[arg-type]
    found: list[tuple[Leftover, Any]] = []
    listings = (
        ("container", engine.containers(client, selector)),
        ("network", client.networks.list(filters=selector)),
        ("volume", client.volumes.list(filters=selector)),
    )
    for kind, objects in listings:
        for obj in objects:
            found_labels = engine.object_labels(obj)
            why = owner_gone(found_labels)
            if why:
                name = engine.container_name(obj) if kind == "container" else obj.name
                found.append((Leftover(kind, name, found_labels.get(labels.STACK), why), obj))
    return found


def collect(*, dry_run: bool) -> tuple[list[Leftover], str | None]:
    """Find (and unless ``dry_run``, remove) the engine's leftovers; the second value
    says why the engine was not searched (it does not answer), if it was not."""
    try:
        client = engine.connect()
    except OmnilabError as exc:
        return [], str(exc)
    report: list[Leftover] = []
    for item, obj in _find(client):
        report.append(item)
        if dry_run:
            continue
        try:
            if item.kind == "container":
                obj.remove(force=True, v=True)
            else:
                obj.remove()
            item.removed = True
        except Exception as exc:
            item.error = getattr(exc, "explanation", None) or str(exc).splitlines()[0]
    return report, None
