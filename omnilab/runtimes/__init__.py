"""Runtimes: where a stack's services run. One folder per runtime (``runtimes/local/``,
``runtimes/docker/``); which runtimes exist is the plug-in registry's business
(:mod:`omnilab.plugins`), so names in settings, CLI choices, ``doctor``, ``gc`` and
messages all come from :func:`runtime_names`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from omnilab import plugins
from omnilab.errors import OmnilabError, RuntimeUnavailable, UsageError
from omnilab.runtimes.base import Leftover, RunningService, Runtime

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.progress import Reporter
    from omnilab.services.base import Service

#: Not a runtime: "the first available runtime, by preference".
AUTO = "auto"


def runtime_names(*, auto: bool = True) -> list[str]:
    """Names a user may choose (``auto`` first), without importing any runtime."""
    return ([AUTO] if auto else []) + plugins.names("runtime")


def check_runtime_name(name: str) -> str:
    """``name`` if it is a runtime (or ``auto``), else a usage error listing the choices."""
    if name not in runtime_names():
        raise UsageError(f"unknown runtime {name!r}: choose one of {', '.join(runtime_names())}")
    return name


def runtime_class(name: str) -> type[Runtime] | None:
    """The class of a named runtime; None when this installation cannot import it."""
    return _runtime_class_or_cause(name)[0]


def _runtime_class_or_cause(name: str) -> tuple[type[Runtime] | None, str | None]:
    """The class of a named runtime, or None and why it cannot be imported here (the
    library it needs, as the registry says it)."""
    check_runtime_name(name)
    try:
        cls = plugins.load("runtime", name)
    except plugins.PluginUnavailable as exc:
        return None, str(exc)
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise OmnilabError(f"the runtime plug-in {name!r} is not a Runtime subclass: {cls!r}")
    return cls, None


def runtime_classes() -> dict[str, type[Runtime]]:
    """Every runtime that imports here, by name."""
    found = {}
    for name in runtime_names(auto=False):
        cls = runtime_class(name)
        if cls is not None:
            found[name] = cls
    return found


def by_preference() -> list[tuple[str, type[Runtime]]]:
    """The runtimes that import here, in the order ``--runtime auto`` tries them."""
    return sorted(runtime_classes().items(), key=lambda item: item[1].auto_preference)


def auto_rule() -> str:
    """What ``--runtime auto`` picks, in words made from the runtimes' preferences and
    :attr:`~omnilab.runtimes.base.Runtime.available_when` ("docker when an engine
    answers and images are there, else local"), for help texts."""
    ordered = by_preference()
    parts = [
        f"{name} when {cls.available_when}" if cls.available_when and i < len(ordered) - 1 else name
        for i, (name, cls) in enumerate(ordered)
    ]
    return ", else ".join(parts)


def working(settings: Settings) -> list[str]:
    """The runtimes that can run a stack on this host now (an empty one: the docker
    runtime needs its engine to answer), by preference: what a worker offers."""
    found = []
    for name, cls in by_preference():
        try:
            reason = cls.unavailable_reason(settings, [])
        except Exception as exc:  # a plug-in's own failure: it does not work here
            reason = str(exc) or type(exc).__name__
        if reason is None:
            found.append(name)
    return found


def select_runtime(
    requested: str, settings: Settings, reporter: Reporter, services: Sequence[Service]
) -> Runtime:
    """Pick the runtime for ``services`` and say which in one line.

    ``auto`` tries the runtimes by their ``auto_preference`` (lowest first) and takes the
    first that can run ``services`` here; the line says why the preferred ones could not.
    """
    check_runtime_name(requested)
    if requested != AUTO:
        cls, reason = _runtime_class_or_cause(requested)
        if cls is not None:
            reason = cls.unavailable_reason(settings, services)
        if cls is None or reason is not None:
            raise RuntimeUnavailable(f"--runtime {requested}: {reason}")
        reporter.note(f"runtime: {requested}")
        return cls(settings, reporter)
    passed: list[str] = []
    loaded = [(name, *_runtime_class_or_cause(name)) for name in runtime_names(auto=False)]
    candidates = sorted(
        loaded, key=lambda item: item[1].auto_preference if item[1] is not None else 1_000_000
    )
    for name, cls, cause in candidates:
        reason = cause if cls is None else cls.unavailable_reason(settings, services)
        if cls is not None and reason is None:
            why = f" ({'; '.join(passed)})" if passed else ""
            reporter.note(f"runtime: {name}{why}")
            return cls(settings, reporter)
        passed.append(f"{name}: {reason}")
    raise RuntimeUnavailable(f"no runtime can run this stack here: {'; '.join(passed)}")


__all__ = [
    "AUTO",
    "Leftover",
    "RunningService",
    "Runtime",
    "auto_rule",
    "by_preference",
    "check_runtime_name",
    "runtime_class",
    "runtime_classes",
    "runtime_names",
    "select_runtime",
    "working",
]
