"""``GET /v1/runs/{id}/logs``: a run's output as server-sent events.

Events, in order:

- ``status`` — ``{"status": ...}`` at the start and whenever it changes;
- ``log`` — one line of the run's log per event (the worker's progress lines, prefixed
  ``omnilab:``, and everything the experiment printed); its ``id`` is the byte offset
  after the line, so a client that reconnects with ``Last-Event-ID`` resumes there;
- ``end`` — ``{"status": ..., "error": ...}`` once the run has finished and every line
  has been sent; the stream then closes.

While the run is queued or running the stream stays open and lines arrive as they are
written (``follow=false`` sends what is there now and ends). The log is read from the
run's folder (``OMNILAB_RUNS_DIR``); once the run has finished, from the artifact store
its record names when that folder is not on this host (:func:`finished_log`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from omnilab.api.auth import ReadKey
from omnilab.api.responses import errors
from omnilab.api.routes.runs import RunId, _get, _state
from omnilab.artifacts import ArtifactError, ArtifactsUrlError, log_key, store_at
from omnilab.errors import RunNotFound
from omnilab.tracking.records import FINISHED, RunRecord

if TYPE_CHECKING:
    from omnilab.api.appstate import StoreAccess

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


def _reader(record: RunRecord) -> Path | None:
    if not record.run_dir:
        return None
    return Path(record.run_dir) / "logs" / "output.log"


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


def _elsewhere(record: RunRecord, path: Path | None) -> bool:
    """Whether a finished run's log is to be read from the artifact store: its folder
    is not on this host."""
    return bool(
        record.status in FINISHED and record.artifacts_url and not (path and path.is_file())
    )


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
    last_check = asyncio.get_running_loop().time()
    stored: bytes | None = None  # a finished run's log, from the artifact store
    while True:
        path = _reader(record)
        if stored is None and _elsewhere(record, path):
            stored = await run_in_threadpool(finished_log, record) or b""
        if stored is not None:
            data = stored[offset : offset + CHUNK]
        else:
            data = await run_in_threadpool(_read, path, offset) if path else b""
        if data:
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
        finished = status in FINISHED
        if finished or not follow:
            if pending:
                yield {"event": "log", "id": str(offset), "data": _text(pending)}
            yield {
                "event": "end",
                "data": json.dumps(
                    {
                        "status": status,
                        "error": record.error,
                        "log_found": bool(stored or (path and os.path.exists(path))),
                    }
                ),
            }
            return
        await asyncio.sleep(POLL_S)
        now = asyncio.get_running_loop().time()
        if now - last_check >= STATUS_EVERY_S:
            last_check = now
            try:
                fresh = await run_in_threadpool(_reload, state, record.id)
            except RunNotFound:
                return
            if fresh is not None:
                record = fresh
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
