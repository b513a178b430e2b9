"""``/v1/workers``: every worker host, alive or not, what it offers and what it runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from omnilab.api.auth import require
from omnilab.api.models import GpuOut, WorkerList, WorkerOut
from omnilab.api.responses import errors
from omnilab.tracking.workers import WorkerStore, WorkerView

router = APIRouter(prefix="/v1", tags=["workers"], dependencies=[Depends(require("read"))])


@router.get("/workers", response_model=WorkerList, responses=errors(401, 403, 422, 503))
def list_workers(
    request: Request,
    everything: bool = Query(
        default=False,
        alias="all",
        description="Every worker ever recorded (the latest 1,000), not only the live ones "
        "and the last of each host that has none.",
    ),
) -> WorkerList:
    """Workers: each live one, and the last one of each host that has none alive (so a
    host that went away shows, as stopped or lost); with its host, runtimes, GPUs
    (model, memory), labels, queues and the runs it is running now."""
    state = request.app.state.omnilab
    with state.db() as store:
        views = WorkerStore(store).overview(state.settings.worker_ttl, everything=everything)
    return WorkerList(workers=[worker_out(v) for v in views])


def worker_out(view: WorkerView) -> WorkerOut:
    return WorkerOut(
        **view.model_dump(exclude={"pid_start", "gpu_details"}),
        alive=view.status == "alive",
        gpu_details=[GpuOut(**g.model_dump()) for g in view.gpu_details],
    )
