"""Ollama: the service spec (:mod:`.service`)."""

from omnilab.services.ollama.service import Ollama

__all__ = ["Ollama"]
