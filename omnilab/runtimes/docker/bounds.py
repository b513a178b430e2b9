"""Resource bounds as the Docker engine enforces them, and how a container that hit one
is recognised.

Every container omnilab creates (a stack's services, the experiment's own container, the
code-generation sandbox) gets its bounds from here, so that one place decides how a bound
becomes a cgroup limit:

- memory: ``mem_limit`` with ``memswap_limit`` equal to it (no swap on top: the bound is
  what the container may use, and it is OOM-killed past it, which the engine reports);
- CPUs: ``nano_cpus``; processes: ``pids_limit`` (threads count too);
- disk: the size of the tmpfs the service's data lives on. A tmpfs is memory, charged to
  the container that writes it: the memory bound covers the container's data on tmpfs
  too, so the container never holds more of the host's memory than its memory bound
  (the record says so, and that memory binds first where disk is not below it). Data on
  a named volume (``OMNILAB_DOCKER_DATA=volume``) or in a kept stack's folder has no size
  limit the engine can enforce; the record says so instead of claiming one.

A run that hits a bound fails naming it: the engine reports an OOM kill (the container's
``State.OOMKilled`` when its main process was killed, an ``oom`` event when any process
in it was), a full tmpfs shows as ENOSPC in the server's log, and a refused fork at the
processes bound is counted by the kernel in the container's cgroup (``pids.events``,
read from this host while the container exists: see
:func:`omnilab.resources.pids_refused`; an engine on another machine gives no such
evidence).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omnilab.errors import UsageError
from omnilab.resources import Bounds, Resources, format_size, pids_refused
from omnilab.runtimes.docker import labels

if TYPE_CHECKING:
    import docker

#: What servers write when their file system is full (the C library's ENOSPC message;
#: Rust's adds "(os error 28)").
_OUT_OF_SPACE = "no space left on device"
#: Where a user raises a bound.
_HOW = "Experiment.resources"


def resolve(
    info: Mapping[str, Any],
    resources: Resources,
    defaults: Mapping[str, Resources | None],
) -> dict[str, Bounds]:
    """The bounds of each container named in ``defaults``, with the defaults capped by
    the memory of the engine's host (``info``: the engine's ``/info``); UsageError (before
    anything starts) for more CPUs than the engine has."""
    host_memory = int(info.get("MemTotal") or 0) or None
    host_cpus = int(info.get("NCPU") or 0) or None
    found: dict[str, Bounds] = {}
    for name, own in defaults.items():
        bounds = resources.bounds_for(name, own, host_memory)
        if bounds.cpus is not None and host_cpus is not None and bounds.cpus > host_cpus:
            raise UsageError(
                f"resources: cpus={bounds.cpus:g} for {name}, but the Docker engine has "
                f"{host_cpus} CPUs"
            )
        found[name] = bounds
    return found


def host_config(bounds: Bounds) -> dict[str, Any]:
    """``containers.create`` keyword arguments that enforce ``bounds`` (the disk bound is
    the size of a tmpfs mount: the caller's)."""
    kwargs: dict[str, Any] = {}
    if bounds.memory is not None:
        kwargs["mem_limit"] = bounds.memory
        kwargs["memswap_limit"] = bounds.memory
    if bounds.cpus is not None:
        kwargs["nano_cpus"] = round(bounds.cpus * 1e9)
    if bounds.pids is not None:
        kwargs["pids_limit"] = bounds.pids
    return kwargs


def record(bounds: Bounds, *, disk_note: str | None) -> dict[str, Any]:
    """What a handle (and so the run record) keeps about the bounds that applied;
    ``disk_note``: why the disk bound did not apply (None: it is a tmpfs's size)."""
    recorded = bounds.to_dict()
    notes: list[str] = []
    if disk_note is not None:
        recorded["disk"] = None
        notes.append(disk_note)
    elif bounds.disk is not None and bounds.memory is not None:
        notes.append("memory includes the data on its tmpfs (a tmpfs is memory)")
        if bounds.disk >= bounds.memory:
            notes.append(
                f"disk {format_size(bounds.disk)} is not below memory "
                f"{format_size(bounds.memory)}: the memory bound stops the data first"
            )
    if notes:
        recorded["notes"] = notes
    return recorded


def oom_killed(client: docker.DockerClient, stack_id: str, since: float) -> set[str]:
    """The services (label ``io.omnilab.service``) of a stack where the engine reported an
    OOM kill since ``since``: any process of the container, not only its first."""
    found: set[str] = set()
    with contextlib.suppress(Exception):  # no events: the containers' state still tells
        # The SDK's types say whole seconds; the engine takes fractions too.
        events: Any = client.events
        for event in events(
            since=int(since) - 1,
            # Now, to the nanosecond: a later second would make the engine wait for it.
            until=f"{time.time():.9f}",
            filters={"event": "oom", "label": f"{labels.STACK}={stack_id}"},
            decode=True,
        ):
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            service = attributes.get(labels.SERVICE)
            if service:
                found.add(service)
    return found


def out_of_space(container: Any) -> bool:
    """Whether the container's server said its file system was full."""
    try:
        text = container.logs().decode(errors="replace")
    except Exception:
        return False
    return _OUT_OF_SPACE in text.lower()


def memory_hit(service: str, recorded: Mapping[str, Any]) -> str:
    memory = recorded.get("memory") or "none"
    return (
        f"{service} hit its memory bound ({memory}): the engine killed it (OOMKilled); "
        f"raise it with {_HOW} (per_service={{{service!r}: Resources(memory=...)}})"
    )


def disk_hit(service: str, recorded: Mapping[str, Any]) -> str:
    return (
        f"{service} hit its disk bound ({recorded.get('disk')}): its data tmpfs is full "
        f"(No space left on device); raise it with {_HOW} "
        f"(per_service={{{service!r}: Resources(disk=...)}})"
    )


def refused_forks(container: Any) -> int:
    """How many new processes or threads the kernel refused the (running) container at
    its processes bound; 0 when unknown."""
    try:
        container.reload()
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    except Exception:
        return 0
    if pid <= 0:
        return 0
    return pids_refused(f"/proc/{pid}/cgroup") or 0


def pids_hit(service: str, recorded: Mapping[str, Any], refused: int) -> str:
    return (
        f"{service} hit its processes bound ({recorded.get('pids')}): the kernel refused it "
        f"{refused} new process(es) or thread(s); raise it with {_HOW} "
        f"(per_service={{{service!r}: Resources(pids=...)}})"
    )


def hits(
    client: docker.DockerClient,
    stack_id: str,
    since: float,
    handles: Mapping[str, Mapping[str, Any]],
    container: Any,
) -> list[str]:
    """One line per bound a service hit; ``container(handle)`` finds its container."""
    killed = oom_killed(client, stack_id, since)
    found: list[str] = []
    for name, handle in handles.items():
        recorded = handle.get("bounds")
        if not recorded:
            continue
        existing = container(handle)
        state = existing.attrs.get("State", {}) if existing is not None else {}
        if name in killed or state.get("OOMKilled"):
            found.append(memory_hit(name, recorded))
        elif recorded.get("disk") and existing is not None and out_of_space(existing):
            found.append(disk_hit(name, recorded))
        refused = refused_forks(existing) if recorded.get("pids") and existing else 0
        if refused:
            found.append(pids_hit(name, recorded, refused))
    return found
