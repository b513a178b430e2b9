"""omnilab's plug-ins, in one registry: services, runtimes, promotable kinds, reporters.

Every plug-in is a *descriptor*: a kind, a name and where its class lives
(``"module:attribute"``). Nothing is imported until the plug-in is asked for, so a
plug-in whose library is missing (the docker SDK, qiskit...) costs nothing and breaks
nothing until someone uses it, and listing names (CLI choices, ``--help``, error
messages) never imports anything.

Three sources, later ones overriding earlier ones by name:

1. omnilab's own plug-ins (:data:`BUILTIN`);
2. installed distributions' entry points, in the groups of :data:`GROUPS`
   (``omnilab.services``, ``omnilab.runtimes``, ``omnilab.promotables``,
   ``omnilab.reporters``), e.g. in a third party's ``pyproject.toml``::

       [project.entry-points."omnilab.services"]
       etcd = "omnilab_etcd:Etcd"

3. :func:`register`, for code that ships no distribution (a notebook, a test).

What each kind must be: a service is a :class:`omnilab.services.base.Service` subclass, a
runtime a :class:`omnilab.runtimes.base.Runtime` subclass, a promotable a
:class:`omnilab.services.promotable.Promotable` subclass whose ``kind`` is its name, a
reporter a :class:`omnilab.progress.Reporter` subclass. The registry checks only that
the name resolves; the layer that uses a kind checks the type (this module sits below
all of them and imports none).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from omnilab.errors import OmnilabError, UsageError

Kind = Literal["service", "runtime", "promotable", "reporter"]

#: Entry-point group of each kind.
GROUPS: dict[Kind, str] = {
    "service": "omnilab.services",
    "runtime": "omnilab.runtimes",
    "promotable": "omnilab.promotables",
    "reporter": "omnilab.reporters",
}

#: omnilab's own plug-ins. Order matters where the user sees it (``doctor``, choices).
BUILTIN: dict[Kind, dict[str, str]] = {
    "service": {
        "qdrant": "omnilab.services.qdrant:Qdrant",
        "redis": "omnilab.services.redis:Redis",
        "postgres": "omnilab.services.postgres:Postgres",
        "ollama": "omnilab.services.ollama:Ollama",
    },
    "runtime": {
        "local": "omnilab.runtimes.local:LocalRuntime",
        "docker": "omnilab.runtimes.docker.runtime:DockerRuntime",
    },
    "promotable": {
        "qdrant_collection": "omnilab.services.qdrant.promotion:QdrantCollection",
        "redis_keys": "omnilab.services.redis.promotion:RedisKeys",
        "postgres_table": "omnilab.services.postgres.promotion:PostgresTable",
    },
    "reporter": {
        "lines": "omnilab.progress:Reporter",
        "notebook": "omnilab.notebook.reporter:NotebookReporter",
        "terminal": "omnilab.terminal:TerminalReporter",
    },
}


class UnknownPlugin(UsageError):
    """No plug-in of that kind has that name (a typo, or a plug-in not installed)."""


class PluginUnavailable(OmnilabError):
    """The plug-in is known but cannot be imported here (its library is missing)."""


@dataclass(frozen=True)
class Descriptor:
    """Where a plug-in lives, and who provided it (``omnilab``, a distribution, code)."""

    kind: Kind
    name: str
    target: str | None
    provider: str
    #: An object handed to :func:`register` directly, instead of a ``target`` to import.
    obj: Any = None


_lock = threading.Lock()
_registered: dict[Kind, dict[str, Descriptor]] = {kind: {} for kind in GROUPS}
_loaded: dict[tuple[Kind, str], Any] = {}
_entry_points: dict[Kind, dict[str, Descriptor]] | None = None


def _check_kind(kind: str) -> Kind:
    if kind not in GROUPS:
        raise ValueError(f"unknown plug-in kind {kind!r}: one of {', '.join(GROUPS)}")
    return kind


def _from_entry_points() -> dict[Kind, dict[str, Descriptor]]:
    global _entry_points
    if _entry_points is None:
        found: dict[Kind, dict[str, Descriptor]] = {kind: {} for kind in GROUPS}
        for kind, group in GROUPS.items():
            for ep in metadata.entry_points(group=group):
                provider = ep.dist.name if ep.dist is not None else "an entry point"
                found[kind][ep.name] = Descriptor(kind, ep.name, ep.value, provider)
        _entry_points = found
    return _entry_points


def descriptors(kind: Kind) -> dict[str, Descriptor]:
    """Every plug-in of ``kind`` by name, nothing imported: built-in ones first."""
    _check_kind(kind)
    merged = {
        name: Descriptor(kind, name, target, "omnilab") for name, target in BUILTIN[kind].items()
    }
    merged.update(_from_entry_points()[kind])
    with _lock:
        merged.update(_registered[kind])
    return merged


def names(kind: Kind) -> list[str]:
    """The names of ``kind``'s plug-ins (for choices and messages); imports nothing."""
    return list(descriptors(kind))


def load(kind: Kind, name: str) -> Any:
    """The plug-in's class, imported on first use.

    ``UnknownPlugin`` (a usage error) names the choices; ``PluginUnavailable`` says which
    library is missing.
    """
    found = descriptors(kind)
    if name not in found:
        choices = ", ".join(found) or "none"
        raise UnknownPlugin(f"unknown {kind} {name!r}: choose one of {choices}")
    key = (kind, name)
    with _lock:
        if key in _loaded:
            return _loaded[key]
    descriptor = found[name]
    obj = descriptor.obj if descriptor.target is None else _import(descriptor)
    with _lock:
        _loaded[key] = obj
    return obj


def _import(descriptor: Descriptor) -> Any:
    assert descriptor.target is not None
    module_name, _, attribute = descriptor.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or module_name
        raise PluginUnavailable(
            f"{descriptor.kind} {descriptor.name!r} needs {missing!r}, which is not installed"
        ) from exc
    try:
        obj = module
        for part in attribute.split(".") if attribute else ():
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise PluginUnavailable(
            f"{descriptor.kind} {descriptor.name!r} from {descriptor.provider}: "
            f"{descriptor.target} does not exist"
        ) from exc
    return obj


def available(kind: Kind) -> dict[str, Any]:
    """Every plug-in of ``kind`` that imports here, by name (the others are skipped)."""
    found: dict[str, Any] = {}
    for name in names(kind):
        try:
            found[name] = load(kind, name)
        except PluginUnavailable:
            continue
    return found


def register(kind: Kind, name: str, target: str | Any) -> None:
    """Add (or replace) a plug-in from code: ``target`` is ``"module:attribute"`` or the
    object itself. For plug-ins that ship no distribution; others use entry points."""
    _check_kind(kind)
    if isinstance(target, str):
        descriptor = Descriptor(kind, name, target, "register()")
    else:
        descriptor = Descriptor(kind, name, None, "register()", obj=target)
    with _lock:
        _registered[kind][name] = descriptor
        _loaded.pop((kind, name), None)


def unregister(kind: Kind, name: str) -> None:
    """Undo :func:`register` (built-in and entry-point plug-ins stay)."""
    with _lock:
        _registered[_check_kind(kind)].pop(name, None)
        _loaded.pop((kind, name), None)


def refresh() -> None:
    """Forget what was imported and read the entry points again (after an install)."""
    global _entry_points
    with _lock:
        _loaded.clear()
        _entry_points = None


__all__ = [
    "BUILTIN",
    "GROUPS",
    "Descriptor",
    "Kind",
    "PluginUnavailable",
    "UnknownPlugin",
    "available",
    "descriptors",
    "load",
    "names",
    "refresh",
    "register",
    "unregister",
]
