"""Each page's check: a session whose key is still active and has the scope; for a form
that changes something, its CSRF token first."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from omnilab.tracking.api_keys import ApiKeyStore
from omnilab.web.session import SignInNeeded, Viewer, WebError, csrf_ok, read_form
from omnilab.web.source import config_of, state_of

READ_ONLY = (
    "omnilab ui is read-only: queue, cancel and promote through `omnilab serve` with an "
    "API key that has the scope"
)


def signed_in(request: Request) -> Viewer | None:
    """The viewer of this request, or None without a valid session (blocking: the store
    is asked whether the key is still active)."""
    config = config_of(request)
    if config.local:
        return Viewer(None, "local", ["read"], local=True)
    data = config.sessions.read(request)
    if data is None or "k" not in data or "c" not in data:
        return None
    with state_of(request).db() as store:
        key = ApiKeyStore(store).active(data["k"])
    if key is None:
        return None
    return Viewer(key.id, key.name, list(key.scopes), data["c"])


def require(request: Request, scope: str = "read") -> Viewer:
    """The viewer, if signed in with ``scope``: else a redirect to sign in, or a 403."""
    viewer = signed_in(request)
    if viewer is None:
        raise SignInNeeded
    request.state.viewer = viewer
    _check_scope(viewer, scope)
    return viewer


def _check_scope(viewer: Viewer, scope: str) -> None:
    if viewer.local and scope != "read":
        raise WebError(403, READ_ONLY)
    if scope not in viewer.scopes:
        raise WebError(
            403,
            f"API key {viewer.key_id} ({viewer.name}) lacks the {scope!r} scope; "
            f"it has: {', '.join(viewer.scopes)}",
        )


async def posted(request: Request, scope: str) -> tuple[Viewer, dict[str, list[str]]]:
    """A form's POST: the session, its CSRF token, then the scope; the form's fields."""
    viewer = await run_in_threadpool(signed_in, request)
    if viewer is None:
        raise SignInNeeded
    request.state.viewer = viewer
    if viewer.local:
        raise WebError(403, READ_ONLY)
    form = await read_form(request)
    if not csrf_ok(viewer, form):
        raise WebError(
            403,
            "the form's security token is missing or does not match this session: "
            "reload the page and send it again",
        )
    _check_scope(viewer, scope)
    return viewer, form
