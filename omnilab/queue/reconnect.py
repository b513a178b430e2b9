"""Riding out outages of the queue's Redis and of the tracking store, in a worker.

rq retries its blocking wait for a message when Redis goes away, but nothing else: a run
that ended during an outage took its slot down with it (rq's ``monitor_work_horse`` asks
Redis for the message's status, and any error there ends rq's work loop). Rather than
guard each of rq's calls, a slot's Redis client gets :class:`Reconnect` as its retry
policy (redis-py's own hook, ``Redis(retry=...)``): every command, whoever issues it (rq's
loop, its heartbeats, the stop-job listener, a run's bookkeeping in the horse), waits
for Redis with backoff and goes on when it answers. Nothing of rq is changed or copied.

It stops waiting, and the error goes up as before, when:

- the process, or the thread, has been told to stop (:meth:`Reconnect.give_up`): a
  worker stops when asked, outage or not;
- the error is not an outage: Redis refuses the credentials. That raises
  :class:`QueueFatal`, which rq does not catch, so the slot ends and says why (see
  :mod:`omnilab.queue.slot`), and the worker stops with that reason.

The outage is reported twice per process (when it starts and when it ends), not at
every try. A run process (forked from its slot, so holding a copy of the policy) stays
quiet: its slot says it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConnectionError,
    TimeoutError,
)
from redis.retry import Retry

from omnilab.errors import OmnilabError, TrackingStoreError

T = TypeVar("T")

#: Longest wait between two tries. Tries are cheap (a refused connection), and each
#: second here is a second more that runs wait once Redis is back.
MAX_BACKOFF_S = 2.0


class QueueFatal(OmnilabError):
    """Redis answers, but will not let this worker in: waiting would not help."""


class Reconnect(Retry):
    """A redis-py retry policy: try again forever, with capped exponential backoff and
    jitter, until :meth:`give_up` or an error that is not an outage."""

    def __init__(
        self,
        what: str,
        report: Callable[[str], None] | None = None,
        *,
        unknown_host_fatal: bool = False,
    ) -> None:
        """``unknown_host_fatal``: a host name that DNS says does not exist is no outage
        (a worker starting with a mistyped URL); once a worker has reached Redis under
        that name, DNS failing for it is one, and is waited out."""
        super().__init__(
            ExponentialWithJitterBackoff(base=0.05, cap=MAX_BACKOFF_S),
            -1,  # forever
            (ConnectionError, TimeoutError, socket.timeout),
            is_retryable=self._retryable,
        )
        self.what = what
        self.report = report
        self.unknown_host_fatal = unknown_host_fatal
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self._given_up = False
        self._given_up_in: set[int] = set()  # threads
        self._down_since: float | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> Reconnect:
        # redis-py copies the policy into each connection; one shared state is what
        # tells an outage's start and end once, and what give_up() reaches.
        return self

    def give_up(self, *, this_thread_only: bool = False) -> None:
        """From now on, Redis errors go up at once (the process is stopping): in every
        thread, or in the calling one only (the others keep waiting, quietly)."""
        if this_thread_only:
            self._given_up_in.add(threading.get_ident())
        else:
            self._given_up = True

    def _retryable(self, error: Exception) -> bool:
        if isinstance(error, AuthenticationError | AuthorizationError):
            raise QueueFatal(f"{self.what} refuses this worker: {_reason(error)}") from error
        if self.unknown_host_fatal and unknown_host(error):
            raise QueueFatal(f"{self.what}: no such host ({_reason(error)})") from error
        if self._given_up or threading.get_ident() in self._given_up_in:
            return False
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                self._say(
                    f"cannot reach {self.what} ({_reason(error)}); waiting for it, "
                    f"trying again every {MAX_BACKOFF_S:g} s at most"
                )
        return True

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        result = super().call_with_retry(do, fail, is_retryable, with_failure_count)
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    down = time.monotonic() - self._down_since
                    self._down_since = None
                    self._say(f"{self.what} answers again (after {down:.1f} s)")
        return result

    def _say(self, message: str) -> None:
        if self.report is not None and os.getpid() == self._owner:
            self.report(message)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


#: getaddrinfo's answers when DNS says the name does not exist (rather than "try again").
_NO_SUCH_NAME = {
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
}
#: libpq's words for the same answers (gai_strerror's text).
_NO_SUCH_NAME_TEXT = ("name or service not known", "no address associated with hostname")


def unknown_host(error: BaseException) -> bool:
    """Whether ``error`` (a Redis client's or the tracking store's) comes from DNS saying
    the host name does not exist: a mistake in the URL, not a server that is away."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, socket.gaierror) and seen.errno in _NO_SUCH_NAME:
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(error).lower()
    return "could not translate host name" in text and any(t in text for t in _NO_SUCH_NAME_TEXT)


#: What a PostgreSQL server says when it answers but will not let us in: not an outage.
_STORE_REFUSALS = (
    "password authentication failed",
    "pg_hba.conf",
    "does not exist",
    "permission denied",
)


def store_outage(error: BaseException) -> bool:
    """Whether ``error`` (opening or using the tracking store) is the store being away,
    which is waited for, rather than a refusal that waiting would not change."""
    if not isinstance(
        error, psycopg.OperationalError | psycopg.InterfaceError | TrackingStoreError
    ):
        return False
    text = str(error).lower()
    return not any(refusal in text for refusal in _STORE_REFUSALS)
