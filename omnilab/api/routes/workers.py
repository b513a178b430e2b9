"""``/v1/workers``: the workers alive now, their slots and what they run."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from omnilab.api import queries
from omnilab.api.auth import require
from omnilab.api.models import WorkerList, WorkerOut
from omnilab.api.responses import errors
from omnilab.tracking import workers

router = APIRouter(prefix="/v1", tags=["workers"], dependencies=[Depends(require("read"))])


@router.get("/workers", response_model=WorkerList, responses=errors(401, 403, 503))
def list_workers(request: Request) -> WorkerList:
    """Workers with a recent heartbeat: concurrency, GPUs, queues, runs in progress."""
    state = request.app.state.omnilab
    with state.db() as store:
        alive = workers.live(store.conn, state.settings.worker_ttl)
        running = queries.running_by_worker(store.conn)
    return WorkerList(
        workers=[
            WorkerOut(**w.model_dump(exclude={"pid_start", "stopped_at"}), running=running[w.id])
            for w in alive
        ]
    )
