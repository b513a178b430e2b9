"""The pages that read: sign-in, runs, a run (its log live), artifacts, compare,
experiments, workers, promotions."""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from omnilab.api.models import RUN_ID
from omnilab.api.routes.artifacts import ArtifactUnavailable, artifact_response
from omnilab.api.routes.logs import finished_log, log_events, log_file
from omnilab.errors import RunNotFound
from omnilab.notebook.charts import CHART_WIDTH, metric_svgs
from omnilab.notebook.compare import Comparison, differs
from omnilab.notebook.runs import RunTable
from omnilab.notebook.svg import PALETTE
from omnilab.promote import PromotionStore
from omnilab.recorded import Run
from omnilab.tracking.api_keys import ApiKeyStore
from omnilab.tracking.chart_cache import ChartCache
from omnilab.tracking.queries import DisplayStore, RunPageStore
from omnilab.tracking.queued_runs import QueueStore
from omnilab.tracking.records import FINISHED, RunRecord
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import WorkerStore
from omnilab.web import listing
from omnilab.web.access import require, signed_in
from omnilab.web.render import WebRoute, page
from omnilab.web.session import WebError, csrf_ok, first, read_form, safe_next
from omnilab.web.source import config_of, state_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)

#: The log a run page shows when the run has ended: its last part, when it is longer.
LOG_TAIL = 1 << 20
MAX_COMPARED = 20
#: Columns per group (params, summary, metrics) on the runs table.
MAX_COLUMNS = 40


class _FinishedCharts:
    """The metric summaries and chart series of finished runs, most recently shown kept.

    A finished run's metrics no longer change: the store keeps its reduced charts
    (tracking/chart_cache.py), and this process keeps what it last showed, which spares
    even that query. The key holds ``finished_at``: a run retried after a failure
    finishes again with another time, so an attempt's charts are never shown for the
    next one. Running runs are never cached.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[Any, Any] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], value: tuple[Any, Any]) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_finished_charts = _FinishedCharts()


# -- sign-in --------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    config = config_of(request)
    if config.local:
        return RedirectResponse(safe_next(next), status_code=303)
    token, cookie = config.sessions.login_token(request)
    response = page(request, "login.html", next=safe_next(next), token=token)
    if cookie is not None:
        config.sessions.set_login(request, response, cookie)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    config = config_of(request)
    if config.local:
        return RedirectResponse("/", status_code=303)
    form = await read_form(request)
    target = safe_next(first(form, "next", "/"))
    if not config.sessions.login_token_ok(request, first(form, "_csrf")):
        raise WebError(
            403, "the sign-in form's security token is missing or expired: reload the page"
        )
    state = state_of(request)
    token = first(form, "key").strip()

    def check() -> Any:
        with state.db() as store:
            return ApiKeyStore(store).verify(token) if token else None

    key = await run_in_threadpool(check)
    if key is None:
        return page(
            request,
            "login.html",
            status=401,
            next=target,
            token=config.sessions.login_token(request)[0],
            flash=["invalid or revoked API key (make one with `omnilab api-key create`)"],
        )
    signed = RedirectResponse(target, status_code=303)
    config.sessions.start(request, signed, key.id)
    return signed


@router.post("/logout")
async def logout(request: Request) -> Response:
    config = config_of(request)
    response = RedirectResponse("/login", status_code=303)
    if config.local:
        return RedirectResponse("/", status_code=303)
    viewer = await run_in_threadpool(signed_in, request)
    form = await read_form(request)
    if viewer is not None and not csrf_ok(viewer, form):
        raise WebError(403, "the form's security token does not match this session")
    config.sessions.end(response)
    return response


# -- runs -----------------------------------------------------------------------------------


def _run_id(text: str) -> str:
    if not re.match(RUN_ID, text):
        raise WebError(
            404, f"{text[:64]!r} is not a run id (4 to 32 hexadecimal characters)", "No such run"
        )
    return text


def _load_run(store: TrackingStore, run_id: str) -> RunRecord:
    try:
        return store.get_run(_run_id(run_id))
    except RunNotFound as exc:
        raise WebError(
            404,
            f"{exc} in this server's tracking store (a run of another deployment?)",
            "No such run",
        ) from None


@router.get("/")
def runs_page(request: Request) -> Response:
    viewer = require(request)
    query = listing.parse(list(request.query_params.multi_items()))
    state = state_of(request)
    with state.db() as store:
        if not viewer.local:
            store.reconcile_orphans()
        pages = RunPageStore(store)
        records, total = pages.run_page(
            query.wanted,
            sort=query.sort,
            order=query.order,
            limit=query.per_page,
            offset=query.offset,
        )
        latest = DisplayStore(store).latest_values([r.id for r in records])
        experiments = pages.experiment_names()
    last_page = max(1, math.ceil(total / query.per_page))
    flash = list(query.problems)
    if query.page > last_page:
        flash.append(f"page {query.page:,} is past the last page ({last_page:,})")
    table = RunTable((Run(r) for r in records), latest=latest)
    columns = [
        (group, keys[:MAX_COLUMNS], values, len(keys) - MAX_COLUMNS)
        for group, keys, values in table.columns()
    ]
    return page(
        request,
        "runs.html",
        status=400 if query.problems else 200,
        flash=flash,
        query=query,
        runs=records,
        columns=columns,
        total=total,
        last_page=last_page,
        experiments=experiments,
        statuses=listing.STATUSES,
    )


def _log_text(record: RunRecord, runs_dir: Path, live: bool) -> tuple[str, int, bool]:
    """The log as text, the byte offset where the text ends (where a live page's stream
    goes on: after the last whole line), and whether its start was cut. Where this host
    has no file of it, a finished run's log comes from the artifact store, and a running
    one's is left to the live page's stream, which brings it all."""
    path = log_file(record, runs_dir)
    data: bytes | None = None
    if path is not None:
        try:
            with open(path, "rb") as fh:
                size = fh.seek(0, 2)
                start = max(0, size - LOG_TAIL)
                fh.seek(start)
                data = fh.read(size - start)
        except OSError:
            data = None
    if data is None:
        stored = finished_log(record) if record.status in FINISHED else None
        if stored is None:
            return "", 0, False
        start = max(0, len(stored) - LOG_TAIL)
        data = stored[start:]
    end = start + len(data)
    if live and not data.endswith(b"\n"):
        whole = data.rfind(b"\n") + 1
        end, data = start + whole, data[:whole]
    if start:
        data = data.split(b"\n", 1)[-1]
    return data.decode("utf-8", errors="replace"), end, start > 0


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> Response:
    viewer = require(request)
    state = state_of(request)
    with state.db() as store:
        record = _load_run(store, run_id)
        key = (record.id, record.finished_at.isoformat() if record.finished_at else "")
        cached = _finished_charts.get(key) if record.status in FINISHED else None
        if cached is None:
            kept = ChartCache(store).charts(record, CHART_WIDTH)
            summaries, series = kept.summaries, kept.series
            if record.status in FINISHED and record.finished_at is not None:
                _finished_charts.put(key, (summaries, series))
        else:
            summaries, series = cached
        artifacts = store.artifacts(record.id)
        info = QueueStore(store).queue_info([record.id]).get(record.id)
        promotions = PromotionStore(store).list(run_id=record.id, limit=20)
    charts = []
    for summary in summaries:
        svgs = metric_svgs([(record.short_id, series)], [summary.key])
        if svgs:
            charts.append((summary.key, svgs[0]))
    live = record.status not in FINISHED
    log, log_end, log_cut = _log_text(record, Path(state.settings.runs_dir), live)
    environment = record.environment or {}
    stack = record.stack or {}
    return page(
        request,
        "run.html",
        run=record,
        live=live,
        summaries=summaries,
        artifacts=artifacts,
        charts=charts,
        info=info,
        promotions=promotions,
        log=log,
        log_end=log_end,
        log_cut=log_cut,
        git=environment.get("git") or {},
        environment=environment,
        services=stack.get("services") or {},
        gpus=stack.get("gpus") or [],
        can_cancel=viewer.can("run") and record.status in ("queued", "running"),
        can_promote=viewer.can("promote") and record.status == "succeeded",
        done=request.query_params.get("done", ""),
    )


@router.get("/runs/{run_id}/artifacts/{path:path}")
def artifact(request: Request, run_id: str, path: str) -> Response:
    """A download from wherever the run's files are kept (its folder, or the artifact
    store it uploaded them to), as the API's ``GET /v1/runs/{id}/artifacts/{path}``."""
    require(request)
    with state_of(request).db() as store:
        record = _load_run(store, run_id)
        recorded = store.artifact(record.id, path)
    try:
        return artifact_response(record, recorded, path)
    except ArtifactUnavailable as exc:
        raise WebError(exc.status, exc.message) from None


@router.get("/runs/{run_id}/log/stream")
async def log_stream(request: Request, run_id: str) -> Response:
    """The run page's live log: the API's log events, authorised by the session cookie,
    from byte ``offset`` (where the page's log ended) or ``Last-Event-ID``."""
    await run_in_threadpool(require, request)
    given = request.headers.get("last-event-id") or request.query_params.get("offset", "0")
    if not re.fullmatch(r"[0-9]{1,18}", given):
        raise WebError(400, f"offset={given[:40]!r}: give a byte offset (a whole number)")
    offset = int(given)
    state = state_of(request)

    def load() -> RunRecord:
        with state.db() as store:
            return _load_run(store, run_id)

    record = await run_in_threadpool(load)
    return EventSourceResponse(log_events(state, record, offset, True), ping=15, send_timeout=30)


# -- compare --------------------------------------------------------------------------------


@router.get("/compare")
def compare_page(request: Request) -> Response:
    require(request)
    wanted = list(dict.fromkeys(request.query_params.getlist("run")))
    if not wanted:
        raise WebError(400, "pick at least one run to compare (tick them in the runs table)")
    if len(wanted) > MAX_COMPARED:
        raise WebError(400, f"{len(wanted)} runs: compare at most {MAX_COMPARED} at once")
    with state_of(request).db() as store:
        records = [_load_run(store, run_id) for run_id in wanted]
        unique = list({r.id: r for r in records}.values())
        latest = DisplayStore(store).latest_values([r.id for r in unique])
        cache = ChartCache(store)
        series = [cache.charts(r, CHART_WIDTH).series for r in unique]
    comparison = Comparison([Run(r) for r in unique], latest, series)
    rows = [
        (group, name, values, len(unique) > 1 and name != "duration_s" and differs(values))
        for group, name, values in comparison.rows()
    ]
    labels = comparison.labels()
    charts = [(key, comparison.plot(key).svgs) for key in comparison.metric_keys]
    return page(
        request,
        "compare.html",
        runs=unique,
        rows=rows,
        legend=[(PALETTE[i % len(PALETTE)], label) for i, label in enumerate(labels)],
        charts=[(key, svgs[0]) for key, svgs in charts if svgs],
    )


# -- experiments, workers, promotions -------------------------------------------------------


@router.get("/experiments")
def experiments_page(request: Request) -> Response:
    viewer = require(request)
    state = state_of(request)
    with state.db() as store:
        recorded = RunPageStore(store).experiment_names()
    catalog = state.catalog
    entries = []
    problems: list[str] = []
    if catalog is not None:
        catalog.refresh()
        entries = [e.describe() for e in catalog]
        problems = catalog.problems
    return page(
        request,
        "experiments.html",
        entries=entries,
        problems=problems,
        recorded=recorded,
        has_catalog=catalog is not None,
        can_run=viewer.can("run"),
    )


@router.get("/workers")
def workers_page(request: Request) -> Response:
    require(request)
    state = state_of(request)
    everything = request.query_params.get("all", "") in ("1", "true", "yes")
    with state.db() as store:
        views = WorkerStore(store).overview(state.settings.worker_ttl, everything=everything)
    return page(
        request,
        "workers.html",
        workers=views,
        everything=everything,
        ttl=state.settings.worker_ttl,
    )


@router.get("/promotions")
def promotions_page(request: Request) -> Response:
    viewer = require(request)
    with state_of(request).db() as store:
        promotions = PromotionStore(store).list(limit=200)
    return page(
        request,
        "promotions.html",
        promotions=promotions,
        can_promote=viewer.can("promote"),
        done=request.query_params.get("done", ""),
    )
