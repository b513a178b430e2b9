"""Where the web UI is mounted: beside the JSON API (``omnilab serve``), or alone on a
local tracking store (``omnilab ui``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from omnilab.queue.settings import QueueSettings, get_queue_settings
from omnilab.version import __version__
from omnilab.web import actions, pages
from omnilab.web.render import SECURITY_HEADERS, error_page
from omnilab.web.source import LocalState, WebConfig

STATIC = Path(__file__).parent / "static"
#: Paths that stay the JSON API's, errors included.
API_PATHS = ("/v1/", "/v1", "/healthz", "/openapi.json", "/docs", "/redoc")


class _Static(StaticFiles):
    """omnilab's CSS and JS, with the pages' security headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_secured)


def _is_page(path: str) -> bool:
    return not path.startswith(API_PATHS)


def install(app: FastAPI, settings: QueueSettings, *, local: bool = False) -> None:
    """Add the pages, the static files and the HTML error pages to ``app`` (whose
    ``state.omnilab`` is the API's state, or a :class:`LocalState`)."""
    app.state.web = WebConfig(settings, local=local)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/static", _Static(directory=STATIC), name="static")
    json_errors = app.exception_handlers.get(StarletteHTTPException)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if _is_page(request.url.path) or json_errors is None:
            message = {404: "there is no such page", 405: "this page does not take that method"}
            return error_page(
                request, exc.status_code, message.get(exc.status_code, str(exc.detail))
            )
        result: Response | Awaitable[Response] = json_errors(request, exc)
        if isinstance(result, Response):
            return result
        return await result

    app.add_exception_handler(StarletteHTTPException, http_error)


def create_ui_app(settings: QueueSettings | None = None) -> FastAPI:
    """``omnilab ui``: the pages alone, read-only, on the tracking store of ``settings``
    (no Redis, no queue, no sign-in)."""
    settings = settings or get_queue_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = LocalState(settings).open()
        app.state.omnilab = state
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="omnilab ui",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install(app, settings, local=True)
    return app
