"""Qdrant: the service spec (:mod:`.service`) and its promotion (:mod:`.promotion`,
with :mod:`.points` for comparing points)."""

from omnilab.services.qdrant.service import Qdrant

__all__ = ["Qdrant"]
