"""What the pages read through: the API's state under ``omnilab serve``, or a read-only
state of its own under ``omnilab ui`` (the tracking store alone: no Redis, no queue)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import Request
from psycopg_pool import ConnectionPool

from omnilab.catalog import Catalog
from omnilab.queue.live_log import LiveLogs
from omnilab.queue.settings import QueueSettings
from omnilab.tracking.base import connect_kwargs
from omnilab.tracking.store import TrackingStore
from omnilab.web.session import Sessions

if TYPE_CHECKING:
    from omnilab.api.appstate import ApiState


class WebConfig:
    """The web UI's own settings for one app: its sessions, and whether it is local."""

    def __init__(self, settings: QueueSettings, *, local: bool) -> None:
        self.local = local
        self.sessions = Sessions(settings.web_secret, settings.web_session_s)


class LocalState:
    """``omnilab ui``: a pool over the tracking store, nothing else."""

    catalog: Catalog | None = None
    live_logs: LiveLogs | None = None  # no queue: a run's log is its file

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings
        self._home: TrackingStore | None = None
        self._pool: ConnectionPool | None = None

    def open(self) -> LocalState:
        self._home = TrackingStore.open(self.settings)  # starts an embedded store, held
        self._pool = ConnectionPool(
            self._home.dsn,
            min_size=1,
            max_size=8,
            kwargs=connect_kwargs(self._home.dsn),
            timeout=10,
            check=ConnectionPool.check_connection,
            open=True,
            name="omnilab-ui",
        )
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._home is not None:
            self._home.close()

    @property
    def location(self) -> str:
        assert self._home is not None
        return self._home.location

    @contextlib.contextmanager
    def db(self) -> Iterator[TrackingStore]:
        assert self._pool is not None and self._home is not None, "open() first"
        with self._pool.connection() as conn:
            yield TrackingStore.over(conn, self._home.dsn)


def state_of(request: Request) -> ApiState | LocalState:
    state: ApiState | LocalState = request.app.state.omnilab
    return state


def config_of(request: Request) -> WebConfig:
    config: WebConfig = request.app.state.web
    return config
