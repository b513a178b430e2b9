"""Images for the docker runtime, built locally from Debian packages (no registry)."""

from omnilab.runtimes.docker.images.builder import ImageStatus, build, status
from omnilab.runtimes.docker.images.debian_base import ImageBuildError
from omnilab.runtimes.docker.images.recipes import BASE, ImageSpec, catalog, for_service

__all__ = [
    "BASE",
    "ImageBuildError",
    "ImageSpec",
    "ImageStatus",
    "build",
    "catalog",
    "for_service",
    "status",
]
