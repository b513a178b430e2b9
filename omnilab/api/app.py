"""The FastAPI application behind ``omnilab serve``.

Every endpoint is under ``/v1`` and needs an API key, except the health check. Adding an
endpoint means adding a router module under ``omnilab/api/routes/`` (with its scope in a
``Depends(require(...))``) and one ``include_router`` line below.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import psycopg_pool
import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from omnilab.api import docs, openapi
from omnilab.api.appstate import ApiState
from omnilab.api.limits import BodyLimit
from omnilab.api.responses import SafeJSONResponse
from omnilab.api.routes import (
    artifacts,
    experiments,
    health,
    logs,
    promotions,
    runs,
    submit,
    workers,
)
from omnilab.catalog import Catalog
from omnilab.errors import TrackingStoreError
from omnilab.queue.broker import QueueUnavailable
from omnilab.queue.settings import QueueSettings, get_queue_settings
from omnilab.version import __version__

log = logging.getLogger("omnilab.api")

DESCRIPTION = """Queue experiments, follow them live, read their results, cancel them.

Authenticate with `Authorization: Bearer <key>`; keys are made with
`omnilab api-key create` and carry scopes: `read`, `run`, `promote`.
Only experiments of the server's experiments folder can be queued, by name.
"""


def create_app(settings: QueueSettings | None = None, catalog: Catalog | None = None) -> FastAPI:
    settings = settings or get_queue_settings()
    catalog = catalog or Catalog(settings.experiments_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ApiState(settings, catalog).open()
        app.state.omnilab = state
        try:
            await state.open_async()
            yield
        finally:
            await state.close_async()
            state.close()

    app = FastAPI(
        title="omnilab",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        docs_url=None,  # FastAPI's pages load from a CDN; docs.install serves them
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body)
    _install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(experiments.router)
    app.include_router(submit.router)  # POST /v1/runs, documented before GET
    app.include_router(runs.router)
    app.include_router(logs.router)
    app.include_router(artifacts.router)
    app.include_router(workers.router)
    app.include_router(promotions.router)
    openapi.install(app, catalog)
    docs.install(app)
    from omnilab.web.app import install as install_web  # imports the API's routes itself

    install_web(app, settings)  # the web UI: pages at /, static files at /static
    return app


def _allowed_methods(app: FastAPI, scope: dict[str, object]) -> list[str]:
    """Every method some route accepts for this path (Starlette's 405 names only the first
    route that matched the path, so GET and POST on /v1/runs would say just one)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "__none__"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, dict(request.scope)))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own format, without echoing inputs (they may not even be valid JSON
        # values, such as NaN).
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, QueueUnavailable | TrackingStoreError):
            detail = str(exc)
        elif isinstance(exc, redis.RedisError):
            detail = "the queue (Redis) cannot be reached"
        else:
            detail = "the tracking store cannot be reached"
        log.warning("%s %s: %s", request.method, request.url.path, detail)
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})

    for error in (
        psycopg.OperationalError,
        psycopg_pool.PoolTimeout,
        redis.ConnectionError,
        redis.TimeoutError,
        QueueUnavailable,
        TrackingStoreError,
    ):
        app.add_exception_handler(error, unavailable)
