"""Sandboxes that run generated code and its tests: local processes or containers.

:func:`sandbox_for` picks the one matching the run's runtime: a container with no
network under the docker runtime, the host's best isolation under the local runtime.
"""

from __future__ import annotations

from typing import Literal

from omnilab.errors import UsageError
from omnilab.workloads.sandbox.base import Limits, Sandbox, SandboxResult
from omnilab.workloads.sandbox.container import ContainerSandbox
from omnilab.workloads.sandbox.local import LocalSandbox

SandboxChoice = Literal["auto", "local", "local-strict", "container"]


def sandbox_for(
    choice: str,
    *,
    runtime: str | None,
    image: str,
    run_id: str | None = None,
    user: str | None = "nobody",
) -> Sandbox:
    """``auto``: a container under the docker runtime, else the local sandbox."""
    if choice == "auto":
        choice = "container" if runtime == "docker" else "local"
    if choice == "local":
        return LocalSandbox(user=user)
    if choice == "local-strict":
        return LocalSandbox(user=user, strict=True)
    if choice == "container":
        return ContainerSandbox(image, run_id=run_id)
    raise UsageError(f"sandbox must be one of auto, local, local-strict, container, not {choice!r}")


__all__ = [
    "ContainerSandbox",
    "Limits",
    "LocalSandbox",
    "Sandbox",
    "SandboxChoice",
    "SandboxResult",
    "sandbox_for",
]
