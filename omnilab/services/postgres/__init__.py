"""PostgreSQL: the service spec (:mod:`.service`) and its promotion (:mod:`.promotion`,
with :mod:`.tables` for DDL, :mod:`.rows` for the copy, :mod:`.checksum` for row sums)."""

from omnilab.services.postgres.service import Postgres

__all__ = ["Postgres"]
