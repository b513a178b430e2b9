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

Every connection to the tracking database is opened with :func:`connect_kwargs`: a host
cut off from the network must not keep its session, and with it the locks it holds (the
sweepers' and the promotions' advisory locks, an open transaction's row locks), for the
two hours the operating system's default TCP keepalive takes to notice.
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

#: Seconds of silence after which either end of a tracking-store connection takes the
#: other for gone: TCP keepalive probes after 10 s idle, every 5 s, 3 unanswered; and
#: data left unacknowledged for as long. The server then ends the session, releasing
#: its locks; the client gets an error and reconnects.
DEAD_PEER_S = 25
_IDLE_S, _INTERVAL_S, _COUNT = 10, 5, 3

#: Asked of the server for each session (user-settable since PostgreSQL 12; ignored over
#: a Unix socket, as the embedded store's).
_SERVER_OPTIONS = {
    "tcp_keepalives_idle": str(_IDLE_S),
    "tcp_keepalives_interval": str(_INTERVAL_S),
    "tcp_keepalives_count": str(_COUNT),
    "tcp_user_timeout": str(DEAD_PEER_S * 1000),
}
#: libpq's own, for the client's end.
_CLIENT_PARAMS = {
    "keepalives": "1",
    "keepalives_idle": str(_IDLE_S),
    "keepalives_interval": str(_INTERVAL_S),
    "keepalives_count": str(_COUNT),
    "tcp_user_timeout": str(DEAD_PEER_S * 1000),
}


def connect_kwargs(
    dsn: str, *, autocommit: bool = True, connect_timeout: int = 10
) -> dict[str, Any]:
    """Keyword arguments for ``psycopg.connect(dsn, ...)`` or a pool's ``kwargs``: the
    dead-peer limits above, where the URL does not set its own (a parameter or an
    ``options=-c ...`` in the URL wins)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        given = {}  # the connection itself will say what is wrong with the URL
    kwargs: dict[str, Any] = {"autocommit": autocommit, "connect_timeout": connect_timeout}
    kwargs.update({k: v for k, v in _CLIENT_PARAMS.items() if k not in given})
    options = str(given.get("options") or "")
    ours = " ".join(f"-c {k}={v}" for k, v in _SERVER_OPTIONS.items() if k not in options)
    if ours:
        # The URL's own options come last: where both set a parameter, the later wins.
        kwargs["options"] = f"{ours} {options}".strip()
    return kwargs


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
