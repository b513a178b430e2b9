"""A queued run's log, live through Redis, so that any API host streams any run's log
while it runs (the file is on the worker's host only).

The worker's horse writes the run's log to its file (``runs/<id>/logs/output.log``) as
before. A :class:`LogShipper` thread in the horse follows that file and appends what it
grows by to a Redis stream of the run's own, ``omnilab:log:<run id>``: each entry is a
piece of the file (field ``d``) and its entry id is the byte offset where the piece ends
(``<end>-0``). The ids of the API's log events are byte offsets of the file too, so a
reader resumes anywhere with ``XREAD ... <offset>-0``, and the file and the stream give
the same events with the same ids, whichever a host reads (or switches to midway).
Following the file, rather than the writes into it, takes in everything that lands
there: the experiment's prints, its subprocesses' output on fds 1 and 2, omnilab's lines.

- Batched: every ``POLL_S`` what the file grew by goes in one round trip (pieces of at
  most ``PIECE`` bytes, their XADDs pipelined), so a chatty run costs a round trip a
  poll, not one a line.
- Bounded: ``XADD ... MAXLEN ~ N`` (``OMNILAB_LOG_STREAM_MAXLEN`` pieces), and an expiry,
  refreshed by each batch while the run runs (a horse killed before its end leaves
  nothing for long), set to ``OMNILAB_LOG_STREAM_TTL`` seconds when it ends.
- Never in the run's way: a thread and a Redis client of its own, short timeouts, no
  retries. Redis away, the shipper tries again ``RETRY_S`` later from where it was; the
  lines are in the file meanwhile, and in the stream once it is back (as far as MAXLEN
  keeps them).
- In order with the outcome: the horse ships its last lines (:meth:`LogShipper.flush`)
  before it records the run's outcome, so that a reader that sees the final status
  finds every line in the stream, as it would in the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

if TYPE_CHECKING:
    from pathlib import Path

    from omnilab.queue.settings import QueueSettings

#: How often the shipper looks at the file: a line reaches Redis within this.
POLL_S = 0.025
#: Largest piece of the log one stream entry holds (MAXLEN x PIECE bounds a stream).
PIECE = 8 << 10
#: Most bytes shipped in one round trip; a larger backlog takes several.
BATCH = 1 << 20
#: Redis away (or slow): the next try after this long.
RETRY_S = 2.0
#: Per round trip: Redis that does not answer within this is taken as away.
TIMEOUT_S = 1.0
#: The expiry of a running run's stream, refreshed by each batch.
LIVE_TTL_S = 24 * 3600
#: A new attempt of a run ships its file from at most this far before its end: a
#: retried run's earlier attempts on the same host are in it.
START_BACKLOG = 4 << 20
#: Most entries one read of a stream returns (at most PIECE bytes each).
READ_COUNT = 128


def stream_key(run_id: str) -> str:
    return f"omnilab:log:{run_id}"


class LogShipper:
    """Follows one run's log file into its Redis stream, from a thread of its own."""

    def __init__(
        self, redis_url: str, run_id: str, path: Path, *, maxlen: int, ttl_s: float
    ) -> None:
        self._url = redis_url
        self._key = stream_key(run_id)
        self._path = path
        self._maxlen = maxlen
        self._ended_ttl = max(1, int(ttl_s))
        self._client: redis.Redis | None = None
        self._fd: int | None = None
        self._offset: int | None = None  # where the next piece starts, once known
        self._new = True  # the stream not yet reset for this attempt
        self._away_until = 0.0
        self._expires_set = -float(LIVE_TTL_S)  # when the stream's expiry was last set
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="omnilab-log", daemon=True)

    @classmethod
    def start(cls, settings: QueueSettings, run_id: str, path: Path) -> LogShipper | None:
        """A running shipper for the run's log; None where the settings turn it off."""
        if settings.log_stream_maxlen <= 0:
            return None
        shipper = cls(
            settings.redis_url,
            run_id,
            path,
            maxlen=settings.log_stream_maxlen,
            ttl_s=settings.log_stream_ttl_s,
        )
        return shipper.follow()

    def follow(self) -> LogShipper:
        """Start following the file (the thread)."""
        self._thread.start()
        return self

    def flush(self) -> None:
        """Ship what the file holds now (unless Redis was found away lately: then it
        returns at once)."""
        with self._lock:
            self._ship(LIVE_TTL_S)

    def close(self) -> None:
        """The last lines, and the stream's expiry after the run; the thread ends."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            self._ship(self._ended_ttl)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._client is not None:
                self._client.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            with self._lock:
                self._ship(LIVE_TTL_S)

    def _ship(self, ttl: int) -> None:
        if time.monotonic() < self._away_until:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDONLY)
            while True:
                size = os.fstat(self._fd).st_size
                if self._offset is None:
                    self._offset = max(0, size - START_BACKLOG)
                end = min(size, self._offset + BATCH)
                idle = end <= self._offset and not self._new and ttl == LIVE_TTL_S
                if idle and time.monotonic() - self._expires_set < LIVE_TTL_S / 2:
                    return  # nothing new, and the stream's expiry is far off
                data = os.pread(self._fd, end - self._offset, self._offset)
                self._send(data, ttl)
                self._offset += len(data)
                if len(data) < BATCH:
                    return
        except (RedisError, OSError) as exc:
            if isinstance(exc, ResponseError):
                self._new = True  # ids the stream refuses (another attempt's): start it anew
            self._away_until = time.monotonic() + RETRY_S

    def _send(self, data: bytes, ttl: int) -> None:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self._url,
                socket_timeout=TIMEOUT_S,
                socket_connect_timeout=TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        assert self._offset is not None
        pipe = self._client.pipeline(transaction=False)
        if self._new:
            pipe.delete(self._key)  # an earlier attempt's stream (its ids may run past ours)
        for at in range(0, len(data), PIECE):
            piece = data[at : at + PIECE]
            pipe.xadd(
                self._key,
                {"d": piece},
                id=f"{self._offset + at + len(piece)}-0",
                maxlen=self._maxlen,
                approximate=True,
            )
        pipe.expire(self._key, ttl)
        pipe.execute()
        self._new = False
        self._expires_set = time.monotonic()


class LiveLogs:
    """The API's reader of runs' log streams, on the event loop (redis.asyncio: a read
    that blocks until a line comes costs no thread)."""

    def __init__(self, redis_url: str) -> None:
        self._redis = redis.asyncio.Redis.from_url(
            redis_url,
            socket_connect_timeout=TIMEOUT_S,
            socket_timeout=10.0,  # above the longest BLOCK a reader asks for
            retry=AsyncRetry(NoBackoff(), 0),
        )

    async def read(self, run_id: str, offset: int, wait: float) -> tuple[int, bytes]:
        """The log after byte ``offset`` as the stream holds it: (where the bytes start,
        the bytes), waiting up to ``wait`` seconds for some. They start later than
        ``offset`` where the stream no longer holds it (trimmed, or expired). Redis away
        reads as nothing new."""
        block = max(1, int(wait * 1000)) if wait > 0 else None
        try:
            reply: Any = await self._redis.xread(
                {stream_key(run_id): f"{offset}-0"}, count=READ_COUNT, block=block
            )
        except (RedisError, OSError):
            await asyncio.sleep(min(wait, RETRY_S / 4))
            return offset, b""
        if not reply:
            return offset, b""
        start: int | None = None
        chunks: list[bytes] = []
        position = offset
        for entry_id, fields in reply[0][1]:
            data = fields.get(b"d", b"")
            end = int(entry_id.split(b"-", 1)[0])
            begin = end - len(data)
            if start is None:
                if begin < offset:  # the piece holding ``offset``
                    data, begin = data[offset - begin :], offset
                start = position = begin
            elif begin != position:
                break  # not the piece that follows (a new attempt's): read from there next
            chunks.append(data)
            position = end
        return (offset if start is None else start), b"".join(chunks)

    async def exists(self, run_id: str) -> bool:
        with contextlib.suppress(RedisError, OSError):
            return bool(await self._redis.exists(stream_key(run_id)))
        return False

    async def close(self) -> None:
        await self._redis.aclose()
