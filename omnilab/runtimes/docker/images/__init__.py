"""Images for the docker runtime, built locally from Debian packages (no registry)."""

from omnilab.runtimes.docker.images.builder import ImageStatus, build, status
from omnilab.runtimes.docker.images.debian_base import ImageBuildError
from omnilab.runtimes.docker.images.recipes import BASE, CATALOG, ImageSpec, for_service

__all__ = [
    "BASE",
    "CATALOG",
    "ImageBuildError",
    "ImageSpec",
    "ImageStatus",
    "build",
    "for_service",
    "status",
]
