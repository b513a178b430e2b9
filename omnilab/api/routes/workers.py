"""``/v1/workers``: the workers alive now, their slots and what they run."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from omnilab.api.auth import require
from omnilab.api.models import WorkerList, WorkerOut
from omnilab.api.responses import errors
from omnilab.tracking.workers import WorkerStore

router = APIRouter(prefix="/v1", tags=["workers"], dependencies=[Depends(require("read"))])


@router.get("/workers", response_model=WorkerList, responses=errors(401, 403, 503))
def list_workers(request: Request) -> WorkerList:
    """Workers with a recent heartbeat: concurrency, GPUs, queues, runs in progress."""
    state = request.app.state.omnilab
    with state.db() as store:
        workers = WorkerStore(store)
        alive = workers.live(state.settings.worker_ttl)
        running = workers.running_runs()
    return WorkerList(
        workers=[
            WorkerOut(**w.model_dump(exclude={"pid_start", "stopped_at"}), running=running[w.id])
            for w in alive
        ]
    )
