"""The promotable items, by kind: declarations rebuilt from run records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omnilab.errors import UsageError
from omnilab.services.postgres.promotion import PostgresTable
from omnilab.services.promotable import ItemRecord, Promotable
from omnilab.services.qdrant.promotion import QdrantCollection
from omnilab.services.redis.promotion import RedisKeys

if TYPE_CHECKING:
    from omnilab.config import Settings

#: Kind -> class; a new service's promotion module adds its class here.
PROMOTABLES: dict[str, type[Promotable]] = {
    cls.kind: cls for cls in (QdrantCollection, RedisKeys, PostgresTable)
}


def item_from_dict(data: dict[str, Any]) -> Promotable:
    """The declaration recorded with a run (``to_dict()``), as an object again."""
    options = dict(data)
    kind = options.pop("kind", None)
    cls = PROMOTABLES.get(str(kind))
    if cls is None:
        raise UsageError(f"unknown promotable kind {kind!r} in the run record")
    return cls(**options)


def other_production(items: list[ItemRecord], settings: Settings) -> list[str]:
    """Targets of recorded items that are not the production configured now.

    A record is only ever acted on (undone, rolled back, compared) against the servers it
    was made on; production URLs are recorded masked, which is enough to tell them apart.
    """
    return [
        f"{i.plan.service} {i.plan.target_url}"
        for i in items
        if item_from_dict(i.item).production_url(settings) != i.plan.target_url
    ]
