"""``omnilab gc``: remove what stacks whose owner is gone left behind.

The reaper normally removes a stack within a second of its owner's death; this is the
backstop for what it could not (the machine rebooted, the engine was down, an older
omnilab without a reaper). Two sources:

1. stack state files (any runtime) whose owner is gone and that were not kept: torn
   down through their runtime's ``destroy``, the same path as every teardown;
2. containers, networks and volumes labelled ``io.omnilab.managed`` whose stack is not
   kept and whose owner is gone, or that name no owner at all (older versions).

A kept stack (``--keep``, ``omnilab stack up``) is never touched: ``omnilab stack down``
removes it. Neither is the volume stacks share for Ollama's models, nor an object whose
owner ran on another host (its processes cannot be seen from here). With
``OMNILAB_LABELS`` set, only objects carrying those labels are considered.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab.procs import owner_alive
from omnilab.runtimes.docker import engine, labels
from omnilab.runtimes.state import StackState, all_states

if TYPE_CHECKING:
    from omnilab.config import Settings


@dataclass
class Leftover:
    kind: str  # "stack", "container", "network" or "volume"
    name: str
    stack: str | None
    why: str
    removed: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


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


def _abandoned_states(settings: Settings) -> list[StackState]:
    return [s for s in all_states(settings.state_dir) if not s.keep and not s.owner_is_alive()]


def _docker_leftovers(client: Any) -> list[tuple[Leftover, Any]]:
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


def collect(settings: Settings, *, dry_run: bool = False) -> tuple[list[Leftover], str | None]:
    """Find (and unless ``dry_run``, remove) leftovers; the second value says why the
    engine part was skipped, if it was."""
    from omnilab.errors import OmnilabError
    from omnilab.progress import QuietReporter
    from omnilab.runtimes import runtime_class

    report: list[Leftover] = []
    for state in _abandoned_states(settings):
        item = Leftover("stack", f"{state.id[:12]} ({state.runtime})", state.id, "owner is gone")
        report.append(item)
        if dry_run:
            continue
        cls = runtime_class(state.runtime)
        try:
            if cls is None:
                raise OmnilabError(f"runtime {state.runtime!r} is not available")
            cls(settings, QuietReporter()).destroy(state)
            state.remove()
            item.removed = True
        except Exception as exc:
            item.error = str(exc).splitlines()[0]
    try:
        client = engine.connect()
    except OmnilabError as exc:
        return report, str(exc)
    for item, obj in _docker_leftovers(client):
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
