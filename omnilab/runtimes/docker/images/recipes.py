"""The images omnilab can build itself, from Debian packages, with no registry.

Tags are pinned (Debian release and the server's major version), never ``latest``. When
a tag here exists on the engine, the docker runtime uses it as the service's default
image; ``OMNILAB_IMAGE_<SERVICE>`` still overrides it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnilab.errors import UsageError
from omnilab.services.base import DEBIAN_SUITE
from omnilab.version import __version__


@dataclass(frozen=True)
class ImageSpec:
    name: str
    tag: str
    description: str
    #: The service whose default image this is under the docker runtime.
    service: str | None = None
    #: The recipe's folder, everything in it the build context: a name under
    #: ``dockerfiles/``, or a path (an image of the caller's own, built with
    #: :func:`omnilab.runtimes.docker.images.build` but not in :data:`CATALOG`); None for
    #: the debootstrap base.
    context: str | Path | None = None
    #: Built by a plain ``omnilab images build``.
    default: bool = True
    #: A recipe file directly under ``dockerfiles/`` (``Dockerfile.experiments``), the
    #: names OmniMind gave them; None: ``<context>/Dockerfile``.
    dockerfile: str | None = None
    #: The build context gets wheels of omnilab and its dependencies, made on the host,
    #: so the image installs them with no index (air-gapped hosts included).
    wheels: bool = False
    #: A program the build context gets under this name, for the recipe to copy into the
    #: image (:attr:`~omnilab.services.base.BuiltImage.binary`): ``binary_path`` when
    #: given (``--binary``), else where the image's service finds it.
    binary: str | None = None
    binary_path: Path | None = None

    @property
    def is_base(self) -> bool:
        """The debootstrap base: made by ``docker import``, not by a recipe."""
        return self.context is None and self.dockerfile is None


BASE = ImageSpec(
    name="base",
    tag=f"omnilab/debian:{DEBIAN_SUITE}",
    description=f"Debian {DEBIAN_SUITE} (minbase), made with debootstrap + docker import",
)

EXPERIMENTS = ImageSpec(
    name="experiments",
    tag=f"omnilab/experiments:{__version__}-{DEBIAN_SUITE}",
    description="Python, omnilab and its clients: runs experiments with "
    "isolation='container' (OmniMind's experiments container)",
    dockerfile="Dockerfile.experiments",
    wheels=True,
    default=False,
)
CODEGEN = ImageSpec(
    name="codegen",
    tag=f"omnilab/codegen:{__version__}-{DEBIAN_SUITE}",
    description="Python and omnilab: the code-generation sandbox's image "
    "(OmniMind's code-gen container)",
    dockerfile="Dockerfile.codegen",
    wheels=True,
    default=False,
)


def _services() -> dict[str, Any]:
    from omnilab import plugins

    return plugins.available("service")


def catalog() -> dict[str, ImageSpec]:
    """Every image omnilab can build, by name: the base, one per service whose class
    declares a ``built_image`` (plug-ins included), and the experiments and codegen images."""
    specs = [BASE]
    for name, cls in _services().items():
        built = cls.built_image
        if built is not None:
            specs.append(
                ImageSpec(
                    name=name,
                    tag=built.tag,
                    description=built.description,
                    service=name,
                    context=built.context,
                    binary=built.binary,
                )
            )
    specs += [EXPERIMENTS, CODEGEN]
    return {spec.name: spec for spec in specs}


def not_buildable() -> dict[str, str]:
    """Services whose image cannot be made here, and why (shown to the user)."""
    return {
        name: cls.unbuildable_reason for name, cls in _services().items() if cls.built_image is None
    }


def for_service(service: str) -> ImageSpec | None:
    """The catalog image that provides ``service``, if there is one."""
    for spec in catalog().values():
        if spec.service == service:
            return spec
    return None


def select(names: Sequence[str | ImageSpec] | None) -> list[ImageSpec]:
    """Specs for ``names`` (default: the default set), bases first; UsageError if unknown.

    A spec given as such is taken as it is: an image of the caller's own.
    """
    known = catalog()
    if not names:
        return [s for s in known.values() if s.default]
    unbuildable = not_buildable()
    chosen: list[ImageSpec] = []
    for name in names:
        if isinstance(name, ImageSpec):
            if name not in chosen:
                chosen.append(name)
            continue
        if name in unbuildable:
            raise UsageError(
                f"{name}: {unbuildable[name]}, so `omnilab images build` cannot make its "
                f"image; copy the official one from a machine with a registry "
                f"(docker save | docker load, see the README's air-gapped section)"
            )
        if name not in known:
            raise UsageError(f"unknown image {name!r}: choose from {', '.join(known)}")
        if known[name] not in chosen:
            chosen.append(known[name])
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


def binary_source(spec: ImageSpec) -> Path:
    """The program ``spec``'s build copies into its image, checked by its service
    (the right program, the right version); UsageError, one line, when there is none."""
    assert spec.binary is not None
    cls = _services().get(spec.service or "")
    if cls is None:
        raise UsageError(f"{spec.name}: no service {spec.service!r} to say what it needs")
    path: Path = cls.image_binary(spec.binary_path)
    return path


def context_files(spec: ImageSpec) -> dict[str, Path]:
    """Every file of ``spec``'s build context: name in the context -> file on disk
    (the binary a recipe takes included, under its name)."""
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
    if isinstance(spec.context, Path):
        folder, hint = spec.context, ""
    else:
        folder = root / spec.context
        hint = (
            "; run omnilab from a source checkout, or point OMNILAB_DOCKERFILES at the "
            "dockerfiles/ folder"
        )
    if not (folder / "Dockerfile").is_file():
        raise UsageError(f"{spec.name}: no recipe at {folder}/Dockerfile{hint}")
    files = {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}
    if spec.binary is not None:
        files[spec.binary] = binary_source(spec)
    return files
