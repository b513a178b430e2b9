"""Resource bounds of a run's containers: memory, CPUs, processes and disk.

Without bounds, one run could exhaust its host: a Docker stack's data on tmpfs grew up to
half the host's memory, with no memory, CPU or process limit on any container. An
experiment declares what its services may use (``Experiment.resources``); what it does
not say gets a safe default. The runtimes turn these into the engine's own limits
(:mod:`omnilab.runtimes.docker.bounds`), record what applied with the run, and name the
bound a run hit when it fails for it.

Here, at the bottom of the layers, because the experiment classes declare bounds and the
stack, the runtimes and the services all read them.

Sizes are ints (bytes) or strings with a binary unit, as Docker writes them: ``"512m"``,
``"2g"``, ``"1.5GiB"``, ``"4 GB"`` (``k``, ``m``, ``g``, ``t``, with or without ``b`` or
``ib``: all mean powers of 1024). ``"unlimited"`` lifts a bound on purpose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from omnilab.errors import UsageError

__all__ = [
    "DEFAULTS",
    "EXPERIMENT",
    "EXPERIMENT_DEFAULTS",
    "UNLIMITED",
    "Bounds",
    "Resources",
    "check",
    "format_size",
    "parse_size",
]

#: The value that lifts a bound on purpose (never the default).
UNLIMITED: Literal["unlimited"] = "unlimited"
#: The name ``per_service`` gives the experiment's own container (``isolation="container"``).
EXPERIMENT = "experiment"
#: A default never exceeds this share of the engine host's memory (memory and disk each):
#: on a small host the defaults shrink rather than promise what the host does not have.
DEFAULT_SHARE = 4

_KIB = 1024
_UNITS = {
    "": 1,
    "b": 1,
    **{f"{p}{s}": _KIB ** (i + 1) for i, p in enumerate("kmgt") for s in ("", "b", "ib")},
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
#: Docker refuses less memory than 6 MiB; no server omnilab runs starts in less than 8.
_MIN_MEMORY = 8 * _KIB * _KIB
#: Docker's own smallest CPU share (``--cpus 0.01``).
_MIN_CPUS = 0.01

Size = int | str
Limit = int | Literal["unlimited"] | None


def parse_size(value: object, what: str) -> int | Literal["unlimited"]:
    """Bytes from an int or a string such as ``"2g"``; UsageError, one line, otherwise."""
    if isinstance(value, str) and value.strip().lower() == UNLIMITED:
        return UNLIMITED
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise UsageError(
            f"resources: {what}={value!r} is not a size; give bytes (an int) or a string "
            "such as '512m' or '2g'"
        )
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE.match(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise UsageError(
                f"resources: {what}={value!r} is not a size; write a number and a unit: "
                "'512m', '2g', '1.5GiB' (k, m, g, t: powers of 1024), or 'unlimited'"
            )
        number = int(float(match.group(1)) * _UNITS[unit])
    if number <= 0:
        raise UsageError(f"resources: {what}={value!r} must be positive; 'unlimited' lifts it")
    return number


def approx_size(number: int) -> str:
    """``1.5 MiB``: a size as a person reads it (progress lines, the CLI), rounded."""
    if number < _KIB:
        return f"{number} B"
    value = float(number)
    for unit in ("KiB", "MiB", "GiB"):
        value /= _KIB
        if value < _KIB or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def format_size(number: int) -> str:
    """``2147483648`` -> ``"2 GiB"``: the largest unit that writes it exactly, so that
    :func:`parse_size` reads it back to the same number."""
    for name, unit in (("TiB", _KIB**4), ("GiB", _KIB**3), ("MiB", _KIB**2), ("KiB", _KIB)):
        if number >= unit and number % unit == 0:
            return f"{number // unit} {name}"
    return f"{number} B"


def _parse_cpus(value: object) -> float | Literal["unlimited"]:
    if isinstance(value, str) and value.strip().lower() == UNLIMITED:
        return UNLIMITED
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        number = float(value)
    except ValueError:
        raise UsageError(
            f"resources: cpus={value!r} is not a number of CPUs (such as 2 or 0.5)"
        ) from None
    if not math.isfinite(number) or number < _MIN_CPUS:
        raise UsageError(f"resources: cpus={value!r} must be at least {_MIN_CPUS}")
    return number


def _parse_pids(value: object) -> int | Literal["unlimited"]:
    if isinstance(value, str) and value.strip().lower() == UNLIMITED:
        return UNLIMITED
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(
            f"resources: pids={value!r} must be a positive number of processes (threads "
            "count too), or 'unlimited'"
        )
    return value


@dataclass(frozen=True)
class Resources:
    """What each container of a run may use, as an experiment declares it::

        class Big(Experiment):
            services = [Redis(), Postgres()]
            resources = Resources(
                memory="1g",          # each container's memory (swap included)
                cpus=2,               # CPUs each container may keep busy
                pids=512,             # processes and threads in each container
                disk="2g",            # each service's data (its tmpfs)
                per_service={
                    "postgres": Resources(disk="8g"),      # overrides, service by service
                    "experiment": Resources(memory="4g"),  # the experiment's own container
                },
            )

    Values apply to every service's container; ``per_service`` overrides them for the
    services it names and for ``"experiment"``, the experiment's own container
    (``isolation="container"``). What is set nowhere gets the service's default, else
    :data:`DEFAULTS`. Bad values raise :class:`~omnilab.errors.UsageError` (one line)
    where they are written, before anything starts. Mappings work too:
    ``resources = {"memory": "1g"}``.

    Values are normalised: sizes become bytes, ``cpus`` a float, so
    ``Resources(memory="2g").memory == 2147483648``.
    """

    memory: Size | None = None
    cpus: float | str | None = None
    pids: int | str | None = None
    disk: Size | None = None
    per_service: Mapping[str, Resources] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.memory is not None:
            memory = parse_size(self.memory, "memory")
            if memory != UNLIMITED and memory < _MIN_MEMORY:
                raise UsageError(
                    f"resources: memory={self.memory!r} is below {format_size(_MIN_MEMORY)}, "
                    "less than any server needs"
                )
            object.__setattr__(self, "memory", memory)
        if self.disk is not None:
            object.__setattr__(self, "disk", parse_size(self.disk, "disk"))
        if self.cpus is not None:
            object.__setattr__(self, "cpus", _parse_cpus(self.cpus))
        if self.pids is not None:
            object.__setattr__(self, "pids", _parse_pids(self.pids))
        if not isinstance(self.per_service, Mapping):
            raise UsageError(
                "resources: per_service must map service names to Resources(...), "
                f"not {type(self.per_service).__name__}"
            )
        own: dict[str, Resources] = {}
        for name, value in self.per_service.items():
            one = coerce(value, f"per_service[{name!r}]")
            if one.per_service:
                raise UsageError(
                    f"resources: per_service[{name!r}] cannot have its own per_service"
                )
            own[str(name)] = one
        object.__setattr__(self, "per_service", own)

    def is_empty(self) -> bool:
        """Nothing declared: every bound is a default."""
        return self == Resources()

    def bounds_for(
        self, name: str, service_default: Resources | None, host_memory: int | None
    ) -> Bounds:
        """The bounds of container ``name``: ``per_service[name]``, else this object's
        values, else ``service_default``, else :data:`DEFAULTS`. Defaults (never what the
        user wrote) are capped at a ``1/DEFAULT_SHARE`` of ``host_memory`` when known."""
        declared = [self.per_service.get(name, Resources()), self]
        defaults = [service_default or Resources(), DEFAULTS]
        cap = host_memory // DEFAULT_SHARE if host_memory else None
        values: dict[str, Any] = {}
        for item in ("memory", "cpus", "pids", "disk"):
            value = next((getattr(r, item) for r in declared if getattr(r, item) is not None), None)
            if value is None:
                value = next(getattr(r, item) for r in defaults if getattr(r, item) is not None)
                if item in ("memory", "disk") and cap and isinstance(value, int):
                    value = max(min(value, cap), _MIN_MEMORY)
            values[item] = None if value == UNLIMITED else value
        return Bounds(**values)


def coerce(value: object, what: str = "resources") -> Resources:
    """A :class:`Resources` from itself, a mapping of its fields, or None."""
    if value is None:
        return Resources()
    if isinstance(value, Resources):
        return value
    if isinstance(value, Mapping):
        names = {f.name for f in fields(Resources)}
        unknown = [str(k) for k in value if k not in names]
        if unknown:
            raise UsageError(
                f"resources: {what} has no field {unknown[0]!r} (it has memory, cpus, pids, "
                "disk, per_service)"
            )
        return Resources(**{str(k): v for k, v in value.items()})
    raise UsageError(
        f"resources: {what} must be Resources(...) or a mapping, not {type(value).__name__}"
    )


def check(value: object, names: Iterable[str], owner: str) -> Resources:
    """An experiment's ``resources``, checked against its services: one line, exit 2, for
    a bad value or a ``per_service`` name that is not one of them (nor ``"experiment"``)."""
    resources = coerce(value)
    known = [*names, EXPERIMENT]
    for name in resources.per_service:
        if name not in known:
            raise UsageError(
                f"resources of {owner}: per_service names {name!r}, which is not one of its "
                f"containers ({', '.join(known)})"
            )
    return resources


@dataclass(frozen=True)
class Bounds:
    """The effective bounds of one container; None: not bounded."""

    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None
    disk: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """What a run record shows: sizes in words (``"2 GiB"``), None where unbounded."""
        return {
            "memory": format_size(self.memory) if self.memory else None,
            "cpus": self.cpus,
            "pids": self.pids,
            "disk": format_size(self.disk) if self.disk else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bounds:
        """Back from :meth:`to_dict` (a state file, a retained stack's descriptor)."""
        return cls(
            memory=_bytes(data.get("memory"), "memory"),
            cpus=data.get("cpus"),
            pids=data.get("pids"),
            disk=_bytes(data.get("disk"), "disk"),
        )

    def as_resources(self) -> Resources:
        """The same bounds, declared (None becomes ``"unlimited"``): a reopened stack gets
        the bounds its run had."""
        return Resources(
            memory=self.memory or UNLIMITED,
            cpus=self.cpus or UNLIMITED,
            pids=self.pids or UNLIMITED,
            disk=self.disk or UNLIMITED,
        )

    def describe(self) -> str:
        """``memory 2 GiB, cpus unbounded, pids 1024, disk 1 GiB``: for messages."""
        shown = self.to_dict()
        return ", ".join(f"{k} {'unbounded' if v is None else v}" for k, v in shown.items())


def _bytes(value: object, what: str) -> int | None:
    if value is None:
        return None
    number = parse_size(value, what)
    return None if number == UNLIMITED else number


#: What a container gets when nothing else is said: enough for the servers' own defaults
#: and a test data set, bounded so that no run takes the host. CPUs are not bounded by
#: default (a run is as fast as the host lets it be); memory, processes and data are.
DEFAULTS = Resources(memory="2g", cpus=UNLIMITED, pids=1024, disk="1g")
#: The experiment's own container: the user's code (numpy, torch...) needs more than a
#: server; its ``disk`` bounds its ``/tmp``.
EXPERIMENT_DEFAULTS = Resources(memory="8g", pids=4096, disk="1g")


# -- evidence of a bound hit, from the kernel ----------------------------------------------

#: Where the kernel shows cgroups (v1: one folder per controller; v2: one tree).
CGROUP_ROOT = "/sys/fs/cgroup"


def pids_refused(proc_cgroup: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> int | None:
    """How many times the kernel refused a new process or thread to the cgroup that the
    process of ``proc_cgroup`` is in, because its processes bound was reached: the
    ``max`` line of that cgroup's ``pids.events``. Nothing else records it (the engine
    reports OOM kills, not this), and it is gone with the container, so it is read while
    the container exists. None when it cannot be read (no pids controller, another
    machine's engine, the process gone).

    ``/proc/self/cgroup`` inside a container works too: the container's own cgroup is the
    root of what it sees (cgroup v2 namespaces, and Docker's v1 mounts)."""
    try:
        with open(proc_cgroup) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    candidates: list[str] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        relative = path.strip("/")
        if "pids" in controllers.split(","):  # v1: the pids controller's own tree
            candidates += [f"{root}/pids/{relative}", f"{root}/pids"]
        elif hierarchy == "0" and not controllers:  # v2: the unified tree
            candidates += [f"{root}/{relative}", root]
    for folder in candidates:
        try:
            with open(f"{folder.rstrip('/')}/pids.events") as fh:
                events = fh.read().split("\n")
        except OSError:
            continue
        for event in events:
            name, _, count = event.partition(" ")
            if name == "max" and count.strip().isdigit():
                return int(count)
    return None
