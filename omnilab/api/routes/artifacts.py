"""``GET /v1/runs/{id}/artifacts/{path}``: one artifact of a run, from wherever the run's
files are kept (the store its record names, else its folder on this host), streamed
through the server or, from an object store, as a redirect to a presigned URL.

:func:`artifact_response` is what the web UI's download link answers with too.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterator
from pathlib import Path as LocalPath
from pathlib import PurePosixPath
from typing import BinaryIO

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from omnilab.api.auth import ReadKey
from omnilab.api.models import Problem
from omnilab.api.responses import errors
from omnilab.api.routes.runs import RunId, _get, _state
from omnilab.artifacts import (
    ArtifactNotFound,
    ArtifactStoreError,
    ArtifactsUrlError,
    BadArtifactPath,
    artifact_key,
    check_path,
    store_at,
)
from omnilab.tracking.records import ArtifactRecord, RunRecord

router = APIRouter(prefix="/v1", tags=["runs"])

#: How long a presigned link works: long enough to start a download, short enough
#: that a link pasted somewhere stops working soon.
LINK_EXPIRES_S = 600
#: An object's body goes to the client by pieces of this size.
STREAM_CHUNK = 1 << 20


class ArtifactUnavailable(Exception):
    """Why an artifact cannot be answered with: a status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@router.get(
    "/runs/{run_id}/artifacts/{path:path}",
    operation_id="get_artifact",
    responses={
        200: {
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The artifact's content, typed by its name (text/csv, image/png; "
            "application/octet-stream when unknown, or when a browser would render it as "
            "a page); its sha256 in `Repr-Digest`.",
        },
        307: {"description": "`redirect=true`: a presigned URL of the object store."},
        **errors(401, 403, 404, 422, 502, 503),
        404: {
            "model": Problem,
            "description": "No such run, or no such artifact (a path that leads out of "
            "the run's artifacts names none).",
        },
    },
    response_class=Response,
)
def get_artifact(
    request: Request,
    key: ReadKey,
    run_id: str = RunId,
    path: str = Path(
        max_length=1024, description="The artifact's path, as the run lists it (`a/b.csv`)."
    ),
    redirect: bool = Query(
        default=False,
        description="From an object store: answer with a 307 to a presigned URL, valid "
        f"{LINK_EXPIRES_S // 60} minutes, instead of streaming through this server.",
    ),
) -> Response:
    """Download one artifact of a run (streamed; or a redirect to the object store)."""
    with _state(request).db() as store:
        record = _get(store, run_id)
        recorded = store.artifact(record.id, path)
    try:
        return artifact_response(record, recorded, path, redirect=redirect)
    except ArtifactUnavailable as exc:
        raise HTTPException(exc.status, exc.message) from None


def artifact_response(
    record: RunRecord, recorded: ArtifactRecord | None, path: str, *, redirect: bool = False
) -> Response:
    """The response that downloads ``path`` of ``record``'s artifacts, or
    :class:`ArtifactUnavailable`: none such (404: a path that leads out of the run's
    artifacts names none either), a store that fails (502). Served as an attachment,
    never as a page of this site."""
    try:
        check_path(path)
    except BadArtifactPath as exc:
        raise ArtifactUnavailable(404, str(exc)) from None
    name = PurePosixPath(path).name
    if record.artifacts_url is None:
        return _file(_in_run_folder(record, path), name, recorded)
    if recorded is None:
        raise ArtifactUnavailable(404, f"run {record.short_id} has no artifact {path!r}")
    try:
        store = store_at(record.artifacts_url)
        key = artifact_key(record.id, path)
        local = store.local_path(key)
        if local is not None:
            return _file(local, name, recorded)
        if redirect:
            link = store.presigned_url(key, name, LINK_EXPIRES_S)
            if link is not None:
                return RedirectResponse(link, status_code=307)
        stream = store.open(key)
    except ArtifactNotFound:
        raise ArtifactUnavailable(
            404,
            f"artifact {path!r} of run {record.short_id} is recorded but no longer in "
            f"{record.artifacts_url}",
        ) from None
    except (ArtifactStoreError, ArtifactsUrlError) as exc:
        raise ArtifactUnavailable(502, str(exc)) from None
    response = StreamingResponse(
        _chunks(stream),
        media_type=_media_type(name),
        headers={"Content-Length": str(recorded.size), **_disposition(name)},
    )
    return _safe(response, recorded)


def _in_run_folder(record: RunRecord, path: str) -> LocalPath:
    """The file under the run's own ``artifacts/`` on this host, never outside it (a
    link may point out)."""
    if not record.run_dir:
        raise ArtifactUnavailable(404, f"run {record.short_id} has no artifact folder")
    base = (LocalPath(record.run_dir) / "artifacts").resolve()
    target = (base / path).resolve()
    if target.is_relative_to(base) and target.is_file():
        return target
    if not target.is_relative_to(base) or base.is_dir():
        shown = f"{path[:200]!r}"
        raise ArtifactUnavailable(404, f"{shown} is not an artifact of run {record.short_id}")
    host = (record.environment or {}).get("hostname") or "the host that ran it"
    raise ArtifactUnavailable(
        404,
        f"run {record.short_id} kept its artifacts in its folder on {host}, not on this "
        "host; OMNILAB_ARTIFACTS_URL (a shared folder or s3://bucket/prefix) puts runs' "
        "files where every host reads them",
    )


def _file(path: LocalPath, name: str, recorded: ArtifactRecord | None) -> Response:
    response = FileResponse(
        path, media_type=_media_type(name), filename=name, content_disposition_type="attachment"
    )
    return _safe(response, recorded)


def _media_type(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind.startswith(("text/html", "image/svg", "application/xhtml", "text/xml")):
        kind = "application/octet-stream"  # never rendered as a page of this site
    return kind


def _disposition(name: str) -> dict[str, str]:
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return {
        "Content-Disposition": (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
        )
    }


def _safe(response: Response, recorded: ArtifactRecord | None) -> Response:
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if recorded is not None:  # RFC 9530: what the client can check its copy against
        digest = base64.b64encode(bytes.fromhex(recorded.sha256)).decode()
        response.headers["Repr-Digest"] = f"sha-256=:{digest}:"
    return response


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := stream.read(STREAM_CHUNK):
            yield chunk
    finally:
        stream.close()
