"""``omnilab doctor``'s lines about Docker: the engine, each service's image, GPUs
passed to containers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omnilab.checks import Check, Status
from omnilab.errors import RuntimeUnavailable, ServiceUnavailable
from omnilab.gpu import host_gpus
from omnilab.runtimes.docker import engine
from omnilab.runtimes.docker.images import builder, recipes

if TYPE_CHECKING:
    from omnilab.config import Settings


def _needed(settings: Settings) -> bool:
    return settings.runtime == "docker"


def check_engine(settings: Settings) -> tuple[Check, Any | None]:
    try:
        client = engine.connect()
        version = client.version()
    except RuntimeUnavailable as exc:
        status: Status = "problem" if _needed(settings) else "warn"
        hint = "start the engine or set DOCKER_HOST"
        if not _needed(settings):
            hint += "; until then stacks run as local processes (--runtime auto)"
        return Check("docker engine", status, str(exc), hint), None
    detail = (
        f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) "
        f"at {engine.engine_address()}"
    )
    return Check("docker engine", "ok", detail), client


def check_images(settings: Settings, client: Any) -> list[Check]:
    from omnilab.runtimes.docker.images.resolve import resolve_image
    from omnilab.services import service_classes

    checks = []
    for name, cls in service_classes().items():
        service = cls()
        try:
            recipe = resolve_image(client, service, None)
        except ServiceUnavailable as exc:
            status: Status = "problem" if _needed(settings) else "warn"
            spec = recipes.for_service(name)
            hint = "docker load the image (README: air-gapped)"
            if spec:
                hint = f"omnilab images build {name}" + (" --binary PATH" if spec.binary else "")
            detail = str(exc).split("; ")[0].removeprefix(f"{name}: ")
            checks.append(Check(f"image {name}", status, detail, hint))
            continue
        if recipe is None:
            checks.append(Check(f"image {name}", "ok", f"{service.image()} (pulled on first use)"))
            continue
        spec = recipes.for_service(name)
        if spec and recipe.image == spec.tag:
            stale = builder.status(client, spec).stale
            if stale:
                checks.append(
                    Check(f"image {name}", "warn", f"{spec.tag}: {stale}", "omnilab images build")
                )
                continue
        checks.append(Check(f"image {name}", "ok", recipe.source))
    return checks


def check_gpu(client: Any | None) -> Check:
    gpus = host_gpus()
    if not gpus:
        return Check("gpu", "ok", "no NVIDIA GPU on this host: runs use the CPU")
    names = ", ".join(f"{g.index}:{g.name}" for g in gpus)
    if client is None:
        return Check("gpu", "ok", f"{names} (local runtime)")
    support = engine.gpu_support(client.info())
    if support.kind is None:
        return Check(
            "gpu",
            "warn",
            f"{names} on the host, but {support.detail}",
            "install the NVIDIA Container Toolkit (nvidia-ctk runtime configure)",
        )
    return Check("gpu", "ok", f"{names}, passed to containers via {support.detail}")


def checks(settings: Settings) -> list[Check]:
    engine_check, client = check_engine(settings)
    found = [engine_check]
    if client is not None:
        found += check_images(settings, client)
    found.append(check_gpu(client))
    return found
