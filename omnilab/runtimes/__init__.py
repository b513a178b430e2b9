"""Runtimes: where a stack's services run (local processes, Docker containers)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from omnilab.errors import RuntimeUnavailable, UsageError
from omnilab.runtimes.base import RunningService, Runtime
from omnilab.runtimes.local.runtime import LocalRuntime

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.progress import Reporter
    from omnilab.services.base import Service

RuntimeName = Literal["auto", "local", "docker"]
RUNTIME_NAMES: tuple[str, ...] = ("auto", "local", "docker")


def runtime_class(name: str) -> type[Runtime] | None:
    """The class of a named runtime; None when this installation does not have it."""
    if name == "local":
        return LocalRuntime
    if name == "docker":
        try:
            module = importlib.import_module("omnilab.runtimes.docker.runtime")
        except ImportError:
            return None
        return module.DockerRuntime  # type: ignore[no-any-return]
    raise UsageError(f"unknown runtime {name!r}: choose one of auto, local, docker")


def select_runtime(
    requested: str, settings: Settings, reporter: Reporter, services: Sequence[Service]
) -> Runtime:
    """Pick the runtime for ``services`` and say which in one line."""
    if requested not in RUNTIME_NAMES:
        raise UsageError(f"unknown runtime {requested!r}: choose one of auto, local, docker")
    if requested == "local":
        reporter.note("runtime: local")
        return LocalRuntime(settings, reporter)
    docker = runtime_class("docker")
    reason = (
        "not available in this installation"
        if docker is None
        else (docker.unavailable_reason(settings, services))
    )
    if docker is not None and reason is None:
        reporter.note("runtime: docker")
        return docker(settings, reporter)
    if requested == "docker":
        raise RuntimeUnavailable(f"--runtime docker: {reason}")
    reporter.note(f"runtime: local (docker: {reason})")
    return LocalRuntime(settings, reporter)


__all__ = [
    "RUNTIME_NAMES",
    "LocalRuntime",
    "RunningService",
    "Runtime",
    "RuntimeName",
    "runtime_class",
    "select_runtime",
]
