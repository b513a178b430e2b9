"""``/v1/healthz`` (and ``/healthz``): is the server able to queue runs? No key needed.

Says whether the tracking store and Redis answer, and how many workers are alive; no
address, name or secret.
"""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from omnilab.api.models import Health, Reachable
from omnilab.tracking.workers import WorkerStore
from omnilab.version import __version__

router = APIRouter(tags=["health"])


def _health(request: Request) -> JSONResponse:
    state = request.app.state.omnilab
    store_ok: Reachable = "ok"
    live: int | None = None
    try:
        with state.db() as store:
            live = len(WorkerStore(store).live(state.settings.worker_ttl))
    except Exception:
        store_ok = "unreachable"
    try:
        state.broker.redis.ping()
        queue_ok: Reachable = "ok"
    except redis.RedisError:
        queue_ok = "unreachable"
    ok = store_ok == "ok" and queue_ok == "ok"
    body = Health(
        status="ok" if ok else "degraded",
        version=__version__,
        tracking_store=store_ok,
        queue=queue_ok,
        experiments=len(state.catalog),
        workers=live,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get(
    "/v1/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The store or the queue is down."}},
)
def healthz(request: Request) -> JSONResponse:
    """Liveness and readiness, without authentication."""
    return _health(request)


@router.get("/healthz", response_model=Health, include_in_schema=False)
def healthz_root(request: Request) -> JSONResponse:
    return _health(request)
