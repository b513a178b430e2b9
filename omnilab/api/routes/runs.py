"""``/v1/runs``: list and read runs, their metrics, cancel them (queuing them is in
:mod:`omnilab.api.routes.submit`)."""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Query, Request

from omnilab.api.appstate import ApiState
from omnilab.api.auth import ReadKey, RunKey
from omnilab.api.models import (
    EXPERIMENT_NAME,
    RUN_ID,
    ArtifactOut,
    CancelOut,
    MetricPointOut,
    MetricSeries,
    MetricsOut,
    MetricSummaryOut,
    QueueOut,
    RunOut,
    RunPage,
)
from omnilab.api.responses import errors, finite
from omnilab.errors import RunNotFound
from omnilab.queue.broker import QueueUnavailable
from omnilab.tracking.queued_runs import QueueInfo, QueueStore
from omnilab.tracking.records import TAG_PATTERN, RunRecord, RunStatus
from omnilab.tracking.store import TrackingStore

router = APIRouter(prefix="/v1", tags=["runs"])
log = logging.getLogger("omnilab.api")

RunId = Path(pattern=RUN_ID, description="A run id, or a unique prefix of at least 4 characters.")


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.omnilab
    return state


def links(run_id: str) -> dict[str, str]:
    base = f"/v1/runs/{run_id}"
    return {
        "self": base,
        "metrics": f"{base}/metrics",
        "logs": f"{base}/logs",
        "cancel": f"{base}/cancel",
        "promote": f"{base}/promote",
    }


def run_out(
    record: RunRecord,
    info: QueueInfo | None,
    store: TrackingStore | None = None,
) -> RunOut:
    """A run as the API shows it; with ``store``, the single-run view (metrics...)."""
    out = RunOut(
        id=record.id,
        experiment=record.experiment,
        name=record.name,
        tags=record.tags,
        status=record.status,
        params=record.params,
        summary=record.summary,
        error=record.error,
        owner=record.owner,
        runtime=record.runtime,
        git_commit=record.git_commit,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        duration_s=record.duration,
        timings=record.timings,
        host=record.host,
        requires=record.requires,
        code_sha256=record.code_sha256,
        waiting=record.waiting if record.status == "queued" else None,
        queue=QueueOut(**info.model_dump()) if info else None,
        links=links(record.id),
    )
    if store is not None:
        out.metrics = {
            m.key: MetricSummaryOut(**finite(m.model_dump(exclude={"key"})))
            for m in store.metric_summaries(record.id)
        }
        out.artifacts = [
            ArtifactOut(
                path=a.path,
                size=a.size,
                sha256=a.sha256,
                url=f"/v1/runs/{record.id}/artifacts/{quote(a.path)}",
            )
            for a in store.artifacts(record.id)
        ]
        out.stack = record.stack
        out.environment = record.environment
        out.seeds = record.seeds
    return out


def _get(store: TrackingStore, run_id: str) -> RunRecord:
    try:
        return store.get_run(run_id)
    except RunNotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/runs", response_model=RunPage, responses=errors(401, 403, 422, 503))
def list_runs(
    request: Request,
    key: ReadKey,
    experiment: str | None = Query(default=None, pattern=EXPERIMENT_NAME, max_length=200),
    status: RunStatus | None = None,
    tag: str | None = Query(default=None, pattern=TAG_PATTERN, description="Runs with this tag."),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> RunPage:
    """Runs, newest first, optionally of one experiment, status or tag."""
    with _state(request).db() as store:
        store.reconcile_orphans()
        records = store.list_runs(
            experiment=experiment,
            status=status,
            tags=[tag] if tag else None,
            limit=limit + 1,
            offset=offset,
        )
        more = len(records) > limit
        records = records[:limit]
        infos = QueueStore(store).queue_info([r.id for r in records])
    return RunPage(
        runs=[run_out(r, infos.get(r.id)) for r in records],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )


@router.get("/runs/{run_id}", response_model=RunOut, responses=errors(401, 403, 404, 422, 503))
def get_run(request: Request, key: ReadKey, run_id: str = RunId) -> RunOut:
    """One run: status, params, summary, metrics (last values), artifacts, attempts."""
    with _state(request).db() as store:
        store.reconcile_orphans()
        record = _get(store, run_id)
        info = QueueStore(store).queue_info([record.id]).get(record.id)
        return run_out(record, info, store)


@router.get(
    "/runs/{run_id}/metrics", response_model=MetricsOut, responses=errors(401, 403, 404, 422, 503)
)
def get_metrics(
    request: Request,
    key: ReadKey,
    run_id: str = RunId,
    metric: str | None = Query(default=None, max_length=200, pattern=r"^[^\x00]+$"),
    after_step: int | None = Query(default=None, ge=-(2**62), le=2**62),
    limit: int = Query(default=10_000, ge=1, le=100_000),
) -> MetricsOut:
    """Every point of every metric (or of `metric`), by step; pages of `limit` points per
    metric, the next one from `after_step` = the last step received."""
    with _state(request).db() as store:
        record = _get(store, run_id)
        summaries = {m.key: m for m in store.metric_summaries(record.id)}
        points = store.metric_pages(record.id, metric, after_step, limit)
    metrics = {}
    for name, summary in summaries.items():
        if metric is not None and name != metric:
            continue
        series = points.get(name, [])
        metrics[name] = MetricSeries(
            summary=MetricSummaryOut(**finite(summary.model_dump(exclude={"key"}))),
            points=[
                MetricPointOut(step=p.step, value=finite(p.value), timestamp=p.timestamp)
                for p in series[:limit]
            ],
            truncated=len(series) > limit,
        )
    return MetricsOut(run_id=record.id, metrics=metrics)


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=CancelOut,
    responses=errors(401, 403, 404, 409, 422, 503),
)
def cancel(request: Request, key: RunKey, run_id: str = RunId) -> CancelOut:
    """Stop a run: a queued one is cancelled at once; a running one is stopped by its
    worker, which tears its stack down and records it `cancelled` (usually within a
    second or two). A finished run cannot be cancelled (409)."""
    return cancel_run(_state(request), run_id)


def cancel_run(state: ApiState, run_id: str) -> CancelOut:
    """What ``POST /v1/runs/{id}/cancel`` and the web UI's cancel button do: the answer,
    or an HTTPException (404 unknown run, 409 finished or not queued)."""
    with state.db() as store:
        record = _get(store, run_id)
        before, queued_here, job = QueueStore(store).request_cancel(record.id)
    if before == "running" and job:
        try:
            state.broker.stop(job)
        except QueueUnavailable as exc:  # recorded; the sweepers send it when Redis is back
            log.warning("run %s: stop request not sent yet: %s", record.id[:8], exc)
    if before == "queued":
        return CancelOut(id=record.id, status="cancelled", detail="cancelled before it started")
    if before == "running" and queued_here:
        return CancelOut(
            id=record.id,
            status="running",
            detail="cancellation requested; its worker is stopping it and tearing its stack down",
        )
    if before == "running":
        raise HTTPException(
            409,
            f"run {record.id[:8]} was started with `omnilab run`, not through the queue; "
            "stop it where it runs (Ctrl-C)",
        )
    raise HTTPException(409, f"run {record.id[:8]} has already ended ({before})")
