"""Images for the docker runtime, built locally from Debian packages (no registry)."""

from omnilab.images.builder import ImageStatus, build, status
from omnilab.images.catalog import BASE, CATALOG, ImageSpec, for_service
from omnilab.images.debian_base import ImageBuildError

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
