"""Which image runs a service on Docker: the user's override, else omnilab's own build,
else the official pinned image, pulled when missing.

Decided before anything starts (the runtime's ``prepare``) and asked again by ``omnilab
doctor``, which reports the same choice without pulling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omnilab.errors import ServiceUnavailable
from omnilab.runtimes.docker import engine

if TYPE_CHECKING:
    import docker

    from omnilab.progress import Reporter
    from omnilab.services.base import Service


@dataclass(frozen=True)
class ContainerRecipe:
    """How a service will run, decided before anything starts."""

    image: str
    image_id: str
    digest: str
    #: One line for the user: the image and where it comes from.
    source: str
    #: The pinned official image that omnilab's own build stands in for, when it does.
    replaces: str | None = None


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def resolve_image(
    client: docker.DockerClient, service: Service, reporter: Reporter | None
) -> ContainerRecipe | None:
    """Which image runs ``service``: the user's choice, else omnilab's local build, else
    the official pinned image; pulled when missing and a registry has it (only with a
    ``reporter``: that is, in ``prepare``). ServiceUnavailable when none can be had."""
    override = service.image_override()
    built = type(service).built_image
    if override:
        candidates = [(override, f"OMNILAB_IMAGE_{service.name.upper()}")]
    else:
        candidates = [(built.tag, "built locally")] if built else []
        candidates.append((service.default_image, "official"))
    for tag, origin in candidates:
        image = engine.local_image(client, tag)
        if image is not None:
            # omnilab's own build of another version stands in for the pinned official
            # image: said at start, and recorded with the run.
            replaces = service.default_image if origin == "built locally" else None
            return ContainerRecipe(
                tag,
                engine.image_id(image),
                engine.image_digest(image),
                f"image {tag} ({origin}, {_short(engine.image_id(image))})",
                replaces,
            )
    wanted = override or service.default_image
    problem = engine.pull_problem(client, wanted)
    if problem is None:
        if reporter is None:
            return None  # pullable: prepare() will pull it
        return _pull(client, service, wanted, reporter)
    fix = f"or set OMNILAB_IMAGE_{service.name.upper()}"
    if override:
        hint = f"build or load it, {fix}"
        if built:
            hint = f"`omnilab images build` makes {built.tag}; build or load {override}, {fix}"
        raise ServiceUnavailable(
            f"{service.name}: image {override} is not on this engine and cannot be pulled "
            f"({problem}); {hint}"
        )
    if built:
        raise ServiceUnavailable(
            f"{service.name}: neither {built.tag} nor {service.default_image} is on this "
            f"engine, and {service.default_image} cannot be pulled ({problem}); run "
            f"`omnilab images build {service.name}{' --binary PATH' if built.binary else ''}` "
            f"to build {built.tag}{'' if built.binary else ' from Debian packages'}, {fix}"
        )
    why = type(service).unbuildable_reason
    raise ServiceUnavailable(
        f"{service.name}: image {service.default_image} is not on this engine and cannot be "
        f"pulled ({problem}); `omnilab images build` cannot make it ({why}): copy it from a "
        f"machine with a registry (docker save | docker load), {fix}"
    )


def _pull(
    client: docker.DockerClient, service: Service, tag: str, reporter: Reporter
) -> ContainerRecipe:
    reporter.note(f"  {service.name}: pulling {tag}")
    began = time.monotonic()
    from docker.utils import parse_repository_tag

    repository, version = parse_repository_tag(tag)
    try:
        for event in client.api.pull(repository, tag=version, stream=True, decode=True):
            if "error" in event:
                raise ServiceUnavailable(f"{service.name}: pulling {tag} failed: {event['error']}")
    except ServiceUnavailable:
        raise
    except Exception as exc:
        raise ServiceUnavailable(f"{service.name}: pulling {tag} failed: {exc}") from None
    image = client.images.get(tag)
    reporter.note(f"  {service.name}: pulled {tag} in {time.monotonic() - began:.0f}s")
    return ContainerRecipe(
        tag,
        engine.image_id(image),
        engine.image_digest(image),
        f"image {tag} (pulled, {_short(engine.image_id(image))})",
    )
