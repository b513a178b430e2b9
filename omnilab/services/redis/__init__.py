"""Redis: the service spec (:mod:`.service`) and its promotion (:mod:`.promotion`)."""

from omnilab.services.redis.service import Redis

__all__ = ["Redis"]
