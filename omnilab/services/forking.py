"""Forking from production: a run starts on a verified copy of production's data.

The opposite direction of promotion, with the same item classes and the same copy and
checksum code: an experiment's ``seeds = [QdrantCollection("docs"), ...]`` are copied
from production into the run's stack before ``run()`` starts. Names follow the
declaration as in ``promotes``: ``name`` is the item in the run's stack, ``target`` (or
``target_prefix``) the item in production, so one declaration can serve both lists.

One :class:`Forker` per service does the work for all that service's seeds of a run:

1. :meth:`Forker.check`, before the run's stack starts: connect to production read-only,
   refuse a seed production does not hold (:class:`SeedMissing`, a usage error: nothing
   started), and count what will be copied;
2. :meth:`Forker.copy`, once the stack is up: copy each item into the run's server,
   compute the checksum of what production returned and, independently, the run's server
   of what it holds, compare them (:class:`ForkFailed` on a difference), and return each
   item's provenance (production's counts and checksum at fork time).

Every connection a forker opens to production reads and nothing else: PostgreSQL
sessions are read-only (``default_transaction_read_only``, one ``REPEATABLE READ READ
ONLY`` transaction), Redis is sent read commands only, Qdrant read calls only. Credentials
that allow nothing but reading are enough.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from omnilab.errors import OmnilabError, UsageError

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.progress import Reporter
    from omnilab.services.base import Endpoint
    from omnilab.services.promotable import Progress, Promotable


class SeedMissing(UsageError):
    """A seed production does not hold (a table, keys, a collection): exit status 2."""


class ProductionUnreachable(OmnilabError):
    """Production's server does not answer or refuses the credentials; the message names
    the service and its URL, masked."""


class ForkFailed(OmnilabError):
    """A copy from production failed or does not match what production returned."""


class Forker(ABC):
    """All the seeds of one service for one run, read from production into the run's stack."""

    def __init__(self, items: list[Promotable], settings: Settings, reporter: Reporter) -> None:
        self.items = items
        self.settings = settings
        self.reporter = reporter
        #: Each item's estimated size in the run's server, in bytes (by label), from
        #: production's counts and sizes, filled by :meth:`check` where it can tell.
        self.sizes: dict[str, int] = {}

    #: What a fork of this service gets from production, for the provenance record.
    consistency: str = ""
    #: Which of the stack's bounds the copy fills: ``disk`` (a server's data folder) or
    #: ``memory`` (a server that holds its data in memory).
    bound: str = "disk"

    @abstractmethod
    def check(self) -> dict[str, int]:
        """Connect to production (read-only) and look at every item: raise
        :class:`SeedMissing` for one production does not hold, :class:`ProductionUnreachable`
        when it cannot be reached; returns how many elements each item will copy (by
        label), for the progress bars, and fills :attr:`sizes` with their estimates."""

    @abstractmethod
    def copy(self, item: Promotable, target: Endpoint, progress: Progress) -> dict[str, Any]:
        """Copy ``item`` from production into the run's server at ``target`` and verify it;
        returns its provenance: ``production`` (counts and checksum of what was read
        there, and production's own count of the whole item) and ``run`` (the counts and
        checksum the run's server computed over its copy)."""

    def production_checksum(
        self, item: Promotable, recorded: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The checksum of what ``item`` selects in production now, read-only and in the
        form (and by the method) of ``recorded``, production's checksum at fork time;
        None when production no longer holds the item. A promotion compares the two to
        tell whether production changed since the fork."""
        raise NotImplementedError(f"{item.label}: no checksum of production's item")

    def close(self) -> None:
        """Close production's connections (and the run's)."""


def connection_error(service: str, url: str, reason: str) -> ProductionUnreachable:
    """One line naming the service and its URL, masked, and why."""
    from omnilab.redact import connection_cause, redact_text, redact_url

    reason = redact_text(connection_cause(reason), url)
    return ProductionUnreachable(
        f"cannot reach production {service} at {redact_url(url)}: {reason}"
    )
