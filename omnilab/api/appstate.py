"""What the API server holds for its lifetime: store connections, the queue, key checks.

At start it opens the tracking store (migrating it; an embedded one is started and held),
connects to Redis, and runs the reconciler once and then every few seconds in a thread:
a run recorded just before a crash, or while Redis was down, is sent when it comes back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from omnilab.api.group_commit import RunWriter
from omnilab.catalog import Catalog
from omnilab.queue.broker import Broker
from omnilab.queue.live_log import LiveLogs
from omnilab.queue.placement import Placer
from omnilab.queue.reconcile import Reconciler
from omnilab.queue.sender import Outbox
from omnilab.queue.sender_process import SenderProcess
from omnilab.queue.settings import QueueSettings
from omnilab.tracking.api_keys import ApiKeyRecord, ApiKeyStore
from omnilab.tracking.base import connect_kwargs
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import Capacity, WorkerStore

log = logging.getLogger("omnilab.api")


class KeyCache:
    """Checked keys, trusted for ``ttl`` seconds so that a request costs no key lookup.

    Entries are keyed by a digest of the presented key; only successful checks are
    cached (a wrong key always costs a lookup, by its id, which is cheap)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, ApiKeyRecord]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> ApiKeyRecord | None:
        """The key, if it was checked less than ``ttl`` seconds ago (no I/O)."""
        hit = self._entries.get(hashlib.sha256(token.encode()).hexdigest())
        if hit is not None and time.monotonic() < hit[0]:
            return hit[1]
        return None

    def verify(self, token: str, state: ApiState) -> ApiKeyRecord | None:
        """Check ``token`` against the store (and remember a good one)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with state.db() as store:
            keys = ApiKeyStore(store)
            record = keys.verify(token)
            if record is not None and now - self._touched.get(record.id, -1e9) > 60:
                keys.touch(record.id)
                self._touched[record.id] = now
        with self._lock:
            if record is None:
                self._entries.pop(digest, None)
            elif self.ttl > 0:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[digest] = (now + self.ttl, record)
        return record


class StoreAccess(Protocol):
    """What reads the tracking store for a request: the API's state, or the read-only
    state of ``omnilab ui`` (which has no queue, so no runs' log streams: None)."""

    settings: QueueSettings
    live_logs: LiveLogs | None

    def db(self) -> AbstractContextManager[TrackingStore]: ...


class ApiState:
    def __init__(self, settings: QueueSettings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.keys = KeyCache(settings.api_key_cache_s)
        self.broker = Broker(settings.redis_url, settings.queue)
        self.reconciler = Reconciler(
            self.broker, worker_ttl=settings.worker_ttl, resend_after=settings.resend_after
        )
        self.sender: Outbox | None = None
        #: Where runs with requirements go (live workers read at most once a second).
        self.placer = Placer(settings.queue, self._capacity)
        self._home: TrackingStore | None = None
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self.writer: RunWriter | None = None
        #: Runs' logs live from Redis, for runs whose log file is not on this host.
        self.live_logs: LiveLogs | None = None
        self._stop = threading.Event()
        self._reconciler: threading.Thread | None = None

    def open(self) -> ApiState:
        self._home = TrackingStore.open(self.settings)  # migrates; holds an embedded store
        self._pool = ConnectionPool(
            self._home.dsn,
            min_size=2,
            max_size=16,
            kwargs=connect_kwargs(self._home.dsn),
            timeout=10,
            # A connection that broke while idle (the store restarted) is replaced before
            # a request gets it, instead of failing that request with a 503.
            check=ConnectionPool.check_connection,
            open=True,
            name="omnilab-api",
        )
        # Messages are built and sent by a process of their own: in this one they cost
        # about a third of each POST /v1/runs (docs/benchmarks.md).
        self.sender = SenderProcess(
            self.settings.redis_url,
            self.settings.queue,
            on_failure=self.reconciler.request_full_check,
        )
        self._reconciler = threading.Thread(
            target=self._reconcile_loop, name="omnilab-reconcile", daemon=True
        )
        self._reconciler.start()
        return self

    async def open_async(self) -> None:
        """The event loop's own pool and the group commit over it (the hot path, POST
        /v1/runs, must not hop to a worker thread per request)."""
        self._apool = AsyncConnectionPool(
            self.dsn,
            min_size=2,
            max_size=8,
            kwargs=connect_kwargs(self.dsn),
            timeout=10,
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="omnilab-api-async",
        )
        await self._apool.open()
        assert self.sender is not None, "open() first"
        self.writer = RunWriter(self._apool, self.sender)
        self.live_logs = LiveLogs(self.settings.redis_url)

    async def close_async(self) -> None:
        if self.live_logs is not None:
            await self.live_logs.close()
        if self.writer is not None:
            await self.writer.close()
        if self._apool is not None:
            await self._apool.close()

    def close(self) -> None:
        self._stop.set()
        if self.sender is not None:
            self.sender.close()
        if self._reconciler is not None:
            self._reconciler.join(timeout=10)
        if self._pool is not None:
            self._pool.close()
        if self._home is not None:
            self._home.close()
        self.broker.close()

    @property
    def dsn(self) -> str:
        assert self._home is not None
        return self._home.dsn

    @contextlib.contextmanager
    def db(self) -> Iterator[TrackingStore]:
        """A store over a pooled connection, for one request."""
        assert self._pool is not None, "the API state is not open"
        with self._pool.connection() as conn:
            yield TrackingStore.over(conn, self.dsn)

    def _capacity(self) -> Capacity:
        with self.db() as store:
            return WorkerStore(store).capacity(self.settings.worker_ttl)

    def _reconcile_loop(self) -> None:
        store: TrackingStore | None = None
        last_error = ""
        while not self._stop.is_set():
            try:
                if store is None or store.conn.closed:
                    store = TrackingStore(self.dsn)
                done = self.reconciler.sweep(store)
                error = done.queue_error or ""
            except (psycopg.Error, OSError) as exc:
                error = f"reconcile: {exc}".splitlines()[0]
                if store is not None:
                    with contextlib.suppress(Exception):
                        store.conn.close()
                store = None
            except Exception as exc:  # never let the thread die: it is what repairs things
                error = f"reconcile: {type(exc).__name__}: {exc}".splitlines()[0]
            if error and error != last_error:
                log.warning("%s", error)
            last_error = error
            self._stop.wait(self.settings.reconcile_interval)
        if store is not None:
            with contextlib.suppress(Exception):
                store.conn.close()
