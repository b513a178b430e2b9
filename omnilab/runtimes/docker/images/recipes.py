"""The images omnilab can build itself, from Debian packages, with no registry.

Tags are pinned (Debian release and the server's major version), never ``latest``. When
a tag here exists on the engine, the docker runtime uses it as the service's default
image; ``OMNILAB_IMAGE_<SERVICE>`` still overrides it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omnilab.errors import UsageError
from omnilab.version import __version__

DEBIAN_SUITE = "bookworm"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    description: str
    #: The service whose default image this is under the docker runtime.
    service: str | None = None
    #: Folder under ``dockerfiles/``; None for the debootstrap base.
    context: str | None = None
    #: Files copied into the build context: name in the context -> path in the source tree.
    extra_files: dict[str, str] = field(default_factory=dict)
    #: Built by a plain ``omnilab images build``.
    default: bool = True
    #: A recipe file directly under ``dockerfiles/`` (``Dockerfile.experiments``), the
    #: names the seed gave them; None: ``<context>/Dockerfile``.
    dockerfile: str | None = None
    #: The build context gets wheels of omnilab and its dependencies, made on the host,
    #: so the image installs them with no index (air-gapped hosts included).
    wheels: bool = False

    @property
    def is_base(self) -> bool:
        """The debootstrap base: made by ``docker import``, not by a recipe."""
        return self.context is None and self.dockerfile is None


BASE = ImageSpec(
    name="base",
    tag=f"omnilab/debian:{DEBIAN_SUITE}",
    description=f"Debian {DEBIAN_SUITE} (minbase), made with debootstrap + docker import",
)

CATALOG: dict[str, ImageSpec] = {
    spec.name: spec
    for spec in (
        BASE,
        ImageSpec(
            name="redis",
            tag=f"omnilab/redis:7.0-{DEBIAN_SUITE}",
            description="Redis 7.0 (Debian's redis-server), the official image's interface",
            service="redis",
            context="redis",
        ),
        ImageSpec(
            name="postgres",
            tag=f"omnilab/postgres:15-{DEBIAN_SUITE}",
            description="PostgreSQL 15 (Debian's postgresql-15), the official image's interface",
            service="postgres",
            context="postgres",
        ),
        ImageSpec(
            name="ollama-standin",
            tag=f"omnilab/ollama-standin:0.6.2-{DEBIAN_SUITE}",
            description="tests only: the Ollama-API stand-in, ollama/ollama's interface",
            context="ollama-standin",
            extra_files={"ollama_standin.py": "tests/ollama_standin.py"},
            default=False,
        ),
        ImageSpec(
            name="experiments",
            tag=f"omnilab/experiments:{__version__}-{DEBIAN_SUITE}",
            description="Python, omnilab and its clients: runs experiments with "
            "isolation='container' (the seed's omnimind-experiments)",
            dockerfile="Dockerfile.experiments",
            wheels=True,
            default=False,
        ),
        ImageSpec(
            name="codegen",
            tag=f"omnilab/codegen:{__version__}-{DEBIAN_SUITE}",
            description="Python and omnilab: the code-generation sandbox's image "
            "(the seed's omnimind-code-gen)",
            dockerfile="Dockerfile.codegen",
            wheels=True,
            default=False,
        ),
    )
}

#: Services whose images cannot be made from Debian packages, and what to do instead.
NOT_BUILDABLE = {
    "qdrant": "no Debian package provides Qdrant",
    "ollama": "no Debian package provides Ollama",
}


def for_service(service: str) -> ImageSpec | None:
    """The catalog image that provides ``service``, if there is one."""
    for spec in CATALOG.values():
        if spec.service == service:
            return spec
    return None


def select(names: list[str] | None) -> list[ImageSpec]:
    """Specs for ``names`` (default: the default set), bases first; UsageError if unknown."""
    if not names:
        return [s for s in CATALOG.values() if s.default]
    chosen: list[ImageSpec] = []
    for name in names:
        if name in NOT_BUILDABLE:
            raise UsageError(
                f"{name}: {NOT_BUILDABLE[name]}, so `omnilab images build` cannot make its "
                f"image; copy the official one from a machine with a registry "
                f"(docker save | docker load, see the README's air-gapped section)"
            )
        if name not in CATALOG:
            raise UsageError(f"unknown image {name!r}: choose from {', '.join(CATALOG)}")
        if CATALOG[name] not in chosen:
            chosen.append(CATALOG[name])
    return sorted(chosen, key=lambda s: not s.is_base)


def recipes_dir() -> Path:
    """Where ``dockerfiles/`` is: ``OMNILAB_DOCKERFILES``, else the source tree, else
    where a wheel installs it (``<prefix>/share/omnilab/dockerfiles``)."""
    explicit = os.environ.get("OMNILAB_DOCKERFILES")
    if explicit:
        return Path(explicit)
    # This file is omnilab/runtimes/docker/images/recipes.py in a checkout.
    source = Path(__file__).resolve().parents[4] / "dockerfiles"
    installed = Path(sys.prefix) / "share" / "omnilab" / "dockerfiles"
    return source if source.is_dir() or not installed.is_dir() else installed


def context_files(spec: ImageSpec) -> dict[str, Path]:
    """Every file of ``spec``'s build context: name in the context -> file on disk."""
    assert not spec.is_base
    root = recipes_dir()
    if spec.dockerfile is not None:
        recipe = root / spec.dockerfile
        if not recipe.is_file():
            raise UsageError(
                f"{spec.name}: no recipe at {recipe}; run omnilab from a source checkout, "
                "or point OMNILAB_DOCKERFILES at the dockerfiles/ folder"
            )
        return {"Dockerfile": recipe}
    assert spec.context is not None
    folder = root / spec.context
    if not (folder / "Dockerfile").is_file():
        raise UsageError(
            f"{spec.name}: no recipe at {folder}/Dockerfile; run omnilab from a source "
            "checkout, or point OMNILAB_DOCKERFILES at the dockerfiles/ folder"
        )
    files = {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}
    for name, relative in spec.extra_files.items():
        source = root.parent / relative
        if not source.is_file():
            raise UsageError(
                f"{spec.name}: needs {relative} from omnilab's source tree, which is not "
                f"here ({source}); build this image from a source checkout"
            )
        files[name] = source
    return files
