"""Promotion: moving a run's results into the production services.

Declare what an experiment produces::

    from omnilab.promote import PostgresTable, QdrantCollection, RedisKeys

    class RagDemo(Experiment):
        promotes = [QdrantCollection("docs"), RedisKeys("emb:*"), PostgresTable("scores")]

then ``omnilab promote RUN [--dry-run]``, ``run.promote(dry_run=True)``, or
``omnilab.promote.promote(run_id, dry_run=..., on_conflict=..., actor=...)``.
"""

from omnilab.promote.flow import diff, promote, promote_after_run
from omnilab.promote.models import PromotionResult, RollbackResult, RunDiff
from omnilab.promote.records import PromotionRecord, PromotionStore
from omnilab.promote.rollback import prune, rollback
from omnilab.services.postgres.promotion import PostgresTable
from omnilab.services.promotable import (
    ItemPlan,
    ItemRecord,
    Promotable,
    PromotionConflict,
    PromotionError,
    PromotionFailed,
    PromotionRefused,
)
from omnilab.services.qdrant.promotion import QdrantCollection
from omnilab.services.redis.promotion import RedisKeys

__all__ = [
    "ItemPlan",
    "ItemRecord",
    "PostgresTable",
    "Promotable",
    "PromotionConflict",
    "PromotionError",
    "PromotionFailed",
    "PromotionRecord",
    "PromotionRefused",
    "PromotionResult",
    "PromotionStore",
    "QdrantCollection",
    "RedisKeys",
    "RollbackResult",
    "RunDiff",
    "diff",
    "promote",
    "promote_after_run",
    "prune",
    "rollback",
]
