"""What every store of the tracking database shares: how it reaches the database.

The tracking database is read and written through stores, one class per part of the
schema, each on :class:`Store`:

- :class:`~omnilab.tracking.store.TrackingStore`: runs, metrics, artifacts; the store
  that opens (and migrates) the connection the others use;
- :class:`~omnilab.tracking.queued_runs.QueueStore`: what only queued runs have
  (attempts, deliveries, cancellation requests);
- :class:`~omnilab.tracking.workers.WorkerStore`: ``omnilab worker`` processes;
- :class:`~omnilab.tracking.api_keys.ApiKeyStore`: the HTTP API's keys;
- :class:`~omnilab.tracking.queries.DisplayStore`: read-only shapes for notebooks;
- :class:`~omnilab.promote.records.PromotionStore`: promotions and the run's data state.

A store is made over a psycopg connection (autocommit) that someone else opened, or over
another store, whose connection it then shares: ``QueueStore(store).claim(...)`` runs on
the connection of ``store``. Making one costs nothing (no I/O), so callers make it where
they need it. Stores sharing a connection share one lock: whichever thread or store a
statement comes from, a connection runs one statement (or one transaction) at a time.

The API's group commit runs on the event loop, with a connection per batch from an async
pool: :class:`AsyncStore` is the same idea over that pool.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

Params = Sequence[Any] | Mapping[str, Any]


class _Link:
    """A connection and its lock, shared by every store made over it, so that replacing
    a broken connection (:meth:`TrackingStore.reconnect`) reaches all of them."""

    __slots__ = ("conn", "lock")

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        # Re-entrant: a transaction holds it while its statements take it again.
        self.lock = threading.RLock()


class Store:
    """One part of the tracking database, as methods, over a shared connection."""

    def __init__(self, db: psycopg.Connection | Store) -> None:
        self._link: _Link = db._link if isinstance(db, Store) else _Link(db)

    @property
    def conn(self) -> psycopg.Connection:
        return self._link.conn

    def _execute(self, query: str, params: Params = ()) -> psycopg.Cursor:
        """Run one statement; its rows are already on the client when this returns."""
        link = self._link
        with link.lock:
            return link.conn.execute(query, params)

    def _dict_rows(self, query: str, params: Params = ()) -> list[dict[str, Any]]:
        """The rows of one statement as column -> value mappings."""
        link = self._link
        with link.lock, link.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def _dict_row(self, query: str, params: Params = ()) -> dict[str, Any] | None:
        """The first row of one statement as a mapping, or None."""
        link = self._link
        with link.lock, link.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchone()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Statements made inside commit together; no other user of the connection
        interleaves its own."""
        link = self._link
        with link.lock, link.conn.transaction():
            yield


class AsyncStore:
    """A store for the event loop: each call takes a connection from ``pool`` for the
    time of its statement."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
