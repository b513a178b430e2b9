"""``GET /v1/runs/{id}/logs``: a run's output as server-sent events.

Events, in order:

- ``status`` — ``{"status": ...}`` at the start and whenever it changes;
- ``log`` — one line of the run's log per event (the worker's progress lines, prefixed
  ``omnilab:``, and everything the experiment printed); its ``id`` is the byte offset
  after the line, so a client that reconnects with ``Last-Event-ID`` resumes there;
- ``end`` — ``{"status": ..., "error": ...}`` once the run has finished and every line
  has been sent; the stream then closes.

While the run is queued or running the stream stays open and lines arrive as they are
written (``follow=false`` sends what is there now and ends).

Where the lines come from (:func:`_source`, looked at again with each look at the run's
status): the log's file when this host has it (the run's folder here, or a folder shared
with its worker), as always; else, for a finished run, the complete log from the store
(:func:`finished_log`); else the run's Redis stream, which its worker fills as the log
grows (:mod:`omnilab.queue.live_log`). The stream's entry ids are the file's byte
offsets, so every source gives the same events with the same ids, and a stream can
switch from one to another midway.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from omnilab.api.auth import ReadKey
from omnilab.api.responses import errors
from omnilab.api.routes.runs import RunId, _get, _state
from omnilab.artifacts import ArtifactError, ArtifactsUrlError, log_key, store_at
from omnilab.errors import RunNotFound
from omnilab.host import host_name
from omnilab.tracking.records import FINISHED, RunRecord

if TYPE_CHECKING:
    from omnilab.api.appstate import StoreAccess
    from omnilab.queue.live_log import LiveLogs

router = APIRouter(prefix="/v1", tags=["runs"])

#: One server-sent event, as the OpenAPI document describes each of them.
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["status", "log", "end"]},
        "data": {"type": "string"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "required": ["event", "data"],
}

#: How often a followed log is looked at for new lines: a small read of a file that
#: has not grown costs microseconds, and a line reaches the reader within this.
POLL_S = 0.05
STATUS_EVERY_S = 1.0
CHUNK = 1 << 16
MAX_LINE = 1 << 16  # a longer line is sent in pieces of this size


@router.get(
    "/runs/{run_id}/logs",
    responses={
        200: {
            "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
            "description": "Server-sent events: status, log (one per line), end.",
        },
        **errors(401, 403, 404, 422, 503),
    },
    response_class=EventSourceResponse,
)
async def logs(
    request: Request,
    key: ReadKey,
    run_id: str = RunId,
    follow: bool = Query(
        default=True,
        description="Keep the stream open until the run ends (false: send "
        "what the log holds now, then end).",
    ),
    last_event_id: str = Header(
        default="",
        pattern=r"^[0-9]{0,18}$",
        description="Resume after this byte offset (the id of the last event received).",
    ),
) -> EventSourceResponse:
    """Follow a run's log live (server-sent events); complete once the run has ended."""
    state = _state(request)

    def load() -> RunRecord:
        with state.db() as store:
            return _get(store, run_id)

    record = await run_in_threadpool(load)
    offset = int(last_event_id or 0)
    return EventSourceResponse(log_events(state, record, offset, follow), ping=15, send_timeout=30)


class LogSource(Protocol):
    """Where a run's log is read from; offsets are byte offsets of the log's file."""

    async def read(self, offset: int, wait: float) -> tuple[int, bytes]:
        """The log after ``offset``: (where the bytes start, the bytes), waiting up to
        ``wait`` seconds when there are none yet. They start later than ``offset`` only
        where the source no longer holds what came before."""
        ...

    async def found(self) -> bool:
        """Whether there is a log there at all."""
        ...


class FileLog:
    """The log's file, on this host's disk (or a folder shared with the worker)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def read(self, offset: int, wait: float) -> tuple[int, bytes]:
        data = await run_in_threadpool(_read, self.path, offset)
        if not data and wait > 0:
            await asyncio.sleep(min(wait, POLL_S))
        return offset, data

    async def found(self) -> bool:
        return os.path.exists(self.path)


class StreamLog:
    """The run's Redis stream, which its worker fills as the log grows."""

    def __init__(self, live: LiveLogs, run_id: str) -> None:
        self.live = live
        self.run_id = run_id

    async def read(self, offset: int, wait: float) -> tuple[int, bytes]:
        return await self.live.read(self.run_id, offset, wait)

    async def found(self) -> bool:
        return await self.live.exists(self.run_id)


class StoredLog:
    """A finished run's complete log in the artifact store, fetched once, when first read."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self._data: bytes | None = None

    async def _load(self) -> bytes:
        if self._data is None:
            self._data = await run_in_threadpool(finished_log, self.record) or b""
        return self._data

    async def read(self, offset: int, wait: float) -> tuple[int, bytes]:
        data = await self._load()
        return offset, data[offset : offset + CHUNK]

    async def found(self) -> bool:
        return bool(await self._load())


def log_file(record: RunRecord, runs_dir: Path) -> Path | None:
    """The run's log file where this host can read it: in this server's runs folder
    (the worker's own, or a folder shared with it), or where the record says for a run
    recorded by this host (``omnilab run`` here); None when it is on another host (a
    path recorded there means nothing here)."""
    shared = runs_dir / record.id / "logs" / "output.log"
    if shared.exists():
        return shared
    if record.run_dir and (record.environment or {}).get("hostname") in (None, host_name()):
        own = Path(record.run_dir) / "logs" / "output.log"
        if own.exists():
            return own
    return None


def _source(record: RunRecord, runs_dir: Path, live: LiveLogs | None) -> LogSource | None:
    path = log_file(record, runs_dir)
    if path is not None:
        return FileLog(path)
    if record.status in FINISHED and record.artifacts_url:
        return StoredLog(record)
    return StreamLog(live, record.id) if live is not None else None


def finished_log(record: RunRecord) -> bytes | None:
    """The whole log of a finished run from the artifact store its record names (it was
    uploaded before the outcome was recorded); None when it names none, or the store
    cannot give it."""
    if record.status not in FINISHED or not record.artifacts_url:
        return None
    try:
        return store_at(record.artifacts_url).read(log_key(record.id))
    except (ArtifactError, ArtifactsUrlError):
        return None


def _read(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(CHUNK)
    except OSError:
        return b""


async def log_events(
    state: StoreAccess, record: RunRecord, offset: int, follow: bool
) -> AsyncIterator[dict[str, str]]:
    """The events of the stream from byte ``offset`` of the log (the web UI's run page
    follows a running run's log through the same generator)."""
    status = record.status
    yield {"event": "status", "data": json.dumps({"status": status})}
    pending = b""
    loop = asyncio.get_running_loop()
    last_check = loop.time()
    live, runs_dir = state.live_logs, Path(state.settings.runs_dir)
    source = _source(record, runs_dir, live)
    while True:
        finished = status in FINISHED
        # Until the next look at the status: a stream's read returns as a line comes.
        wait = 0.0 if finished or not follow else STATUS_EVERY_S - (loop.time() - last_check)
        start, data = await source.read(offset, wait) if source else (offset, b"")
        if data:
            if start != offset:  # what came before is gone from the source: a cut
                pending, offset = b"", start
            position = offset - len(pending)  # where the buffered text starts in the file
            offset += len(data)
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                position += len(line) + 1
                # The id is the offset after the line: a resumed stream starts clean.
                yield {"event": "log", "id": str(position), "data": _text(line)}
            if len(pending) > MAX_LINE:
                yield {"event": "log", "id": str(offset), "data": _text(pending)}
                pending = b""
            continue  # read on while there is more
        if finished or not follow:
            if pending:
                yield {"event": "log", "id": str(offset), "data": _text(pending)}
            yield {
                "event": "end",
                "data": json.dumps(
                    {
                        "status": status,
                        "error": record.error,
                        "log_found": bool(source and await source.found()),
                    }
                ),
            }
            return
        if source is None:
            await asyncio.sleep(POLL_S)
        now = loop.time()
        if now - last_check >= STATUS_EVERY_S:
            last_check = now
            try:
                fresh = await run_in_threadpool(_reload, state, record.id)
            except RunNotFound:
                return
            if fresh is not None:
                record = fresh
                source = _source(record, runs_dir, live)
                if record.status != status:
                    status = record.status
                    yield {"event": "status", "data": json.dumps({"status": status})}


def _reload(state: StoreAccess, run_id: str) -> RunRecord | None:
    try:
        with state.db() as store:
            return store.get_run(run_id)
    except RunNotFound:
        raise
    except Exception:
        return None  # the store hiccuped: keep streaming, look again next time


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r")
