"""The promotable items, by kind: declarations rebuilt from run records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omnilab import plugins
from omnilab.errors import UsageError
from omnilab.redact import redact_url
from omnilab.services.promotable import ItemRecord, Promotable

if TYPE_CHECKING:
    from omnilab.config import Settings


def promotable_class(kind: str) -> type[Promotable]:
    """The class of a promotable kind (a ``promotable`` plug-in named by its ``kind``)."""
    if kind not in plugins.names("promotable"):
        raise UsageError(f"unknown promotable kind {kind!r} in the run record")
    cls = plugins.load("promotable", kind)
    if not (isinstance(cls, type) and issubclass(cls, Promotable)):
        raise UsageError(f"the promotable plug-in {kind!r} is not a Promotable subclass")
    return cls


def item_from_dict(data: dict[str, Any]) -> Promotable:
    """The declaration recorded with a run (``to_dict()``), as an object again."""
    options = dict(data)
    kind = options.pop("kind", None)
    return promotable_class(str(kind))(**options)


def other_production(items: list[ItemRecord], settings: Settings) -> list[str]:
    """Targets of recorded items that are not the production configured now.

    A record is only ever acted on (undone, rolled back, compared) against the servers it
    was made on; production URLs are recorded masked, which is enough to tell them apart.
    """
    return [
        # Masked again: a record written by an older omnilab may hold it in clear.
        f"{i.plan.service} {redact_url(i.plan.target_url)}"
        for i in items
        if item_from_dict(i.item).production_url(settings) != i.plan.target_url
    ]


def switch_order(item: ItemRecord) -> int:
    """Each service class says where its switch goes (``Service.switch_order``): the one
    most likely to wait or fail (a PostgreSQL lock) first, so that a failure there has
    nothing to switch back. A promotion finished by another process keeps that order."""
    from omnilab.services import service_class

    return service_class(item.plan.service).switch_order
