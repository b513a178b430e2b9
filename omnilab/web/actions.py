"""The pages that act, for keys with the scope: queue (a form per experiment), cancel,
plan and promote, roll back. Each goes through the code path its ``/v1`` route uses:
:func:`valid_params` and :func:`record_run` (``POST /v1/runs``), :func:`cancel_run`,
:func:`carry_out_promotion` and :func:`carry_out_rollback`."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from omnilab.api.appstate import ApiState
from omnilab.api.models import EXPERIMENT_NAME, RUN_ID
from omnilab.api.routes.promotions import (
    ActionRefused,
    carry_out_promotion,
    carry_out_rollback,
)
from omnilab.api.routes.runs import cancel_run
from omnilab.api.routes.submit import record_run, valid_params
from omnilab.catalog import CatalogEntry, UnknownExperiment
from omnilab.errors import UsageError
from omnilab.notebook.promotion import promotion_html
from omnilab.tracking.records import check_name_and_tags
from omnilab.web.access import posted, require
from omnilab.web.forms import FormField, attach_errors, fields_of, values_of
from omnilab.web.render import WebRoute, page
from omnilab.web.session import Viewer, WebError, first
from omnilab.web.source import state_of

router = APIRouter(route_class=WebRoute, include_in_schema=False)

ON_CONFLICT = ("fail", "replace", "version")


def _api_state(request: Request) -> ApiState:
    state = state_of(request)
    if not isinstance(state, ApiState):
        raise WebError(403, "this server is read-only (omnilab ui)")
    return state


def _entry(request: Request, name: str) -> CatalogEntry:
    catalog = state_of(request).catalog
    if catalog is None:
        raise WebError(404, "this server has no experiments folder (omnilab ui)")
    if not re.match(EXPERIMENT_NAME, name):
        raise WebError(404, f"{name[:64]!r} is not an experiment name")
    catalog.refresh()
    try:
        return catalog.get(name)
    except UnknownExperiment as exc:
        raise WebError(404, str(exc), "No such experiment") from None


def _experiment_page(
    request: Request,
    viewer: Viewer,
    entry: CatalogEntry,
    fields: list[FormField],
    *,
    status: int = 200,
    flash: list[str] | None = None,
    run_name: str = "",
    run_tags: str = "",
) -> Response:
    return page(
        request,
        "experiment.html",
        status=status,
        flash=flash or [],
        entry=entry.describe(),
        fields=fields,
        can_run=viewer.can("run"),
        run_name=run_name,
        run_tags=run_tags,
    )


@router.get("/experiments/{name}")
def experiment_page(request: Request, name: str) -> Response:
    viewer = require(request)
    entry = _entry(request, name)
    return _experiment_page(request, viewer, entry, fields_of(entry.cls.Params.model_json_schema()))


@router.post("/experiments/{name}/queue")
async def queue(request: Request, name: str) -> Response:
    viewer, form = await posted(request, "run")
    state = _api_state(request)
    entry = await run_in_threadpool(_entry, request, name)
    fields = fields_of(entry.cls.Params.model_json_schema())
    values = values_of(fields, form)
    run_name, run_tags = first(form, "_run_name").strip(), first(form, "_run_tags")
    problems: list[str] = []
    try:
        labels = check_name_and_tags(run_name or None, run_tags.replace(",", " ").split())
    except UsageError as exc:
        problems.append(str(exc))
    params: dict[str, Any] = {}
    try:  # also when a field could not be read: every other field's error shows at once
        params = valid_params(entry, values)
    except RequestValidationError as exc:
        problems += attach_errors(fields, list(exc.errors()))
    if problems or any(f.error for f in fields):
        return _experiment_page(
            request,
            viewer,
            entry,
            fields,
            status=422,
            flash=problems or ["some params are not valid: see the fields marked"],
            run_name=run_name,
            run_tags=run_tags,
        )
    run = await record_run(
        state,
        entry,
        params,
        state.settings.run_retries,
        viewer.key_id or "",
        f"api-key:{viewer.name}",
        labels,
    )
    return RedirectResponse(f"/runs/{run.id}?done=queued", status_code=303)


def _run_ref(run_id: str) -> str:
    if not re.match(RUN_ID, run_id):
        raise WebError(404, f"{run_id[:64]!r} is not a run id", "No such run")
    return run_id


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    await posted(request, "run")
    state = _api_state(request)
    out = await run_in_threadpool(cancel_run, state, _run_ref(run_id))
    done = "cancelled" if out.status == "cancelled" else "cancel-requested"
    return RedirectResponse(f"/runs/{out.id}?done={done}", status_code=303)


def _promotion_page(
    request: Request, run_id: str, result: Any, *, status: int, flash: list[str], plan: bool
) -> Response:
    html = Markup(promotion_html(result)) if result is not None else None
    return page(
        request,
        "promote.html",
        status=status,
        flash=flash,
        run_id=run_id,
        result=html,
        plan=plan,
        on_conflict=getattr(result, "on_conflict", "fail"),
        choices=ON_CONFLICT,
    )


def _conflict(text: str) -> str:
    if text not in ON_CONFLICT:
        raise WebError(400, f"on_conflict={text[:40]!r}: choose one of {', '.join(ON_CONFLICT)}")
    return text


@router.get("/runs/{run_id}/promote")
def promote_plan(request: Request, run_id: str) -> Response:
    """The plan (a dry run: production is only read), and the button that carries it out."""
    viewer = require(request, "promote")
    state = _api_state(request)
    on_conflict = _conflict(request.query_params.get("on_conflict", "fail"))
    try:
        result = carry_out_promotion(
            state.settings, _run_ref(run_id), True, on_conflict, f"api-key:{viewer.name}"
        )
    except ActionRefused as exc:
        return _promotion_page(
            request,
            run_id,
            getattr(exc.error, "result", None),
            status=exc.status,
            flash=[str(exc)],
            plan=False,
        )
    return _promotion_page(request, run_id, result, status=200, flash=[], plan=True)


@router.post("/runs/{run_id}/promote")
async def promote(request: Request, run_id: str) -> Response:
    viewer, form = await posted(request, "promote")
    state = _api_state(request)
    on_conflict = _conflict(first(form, "on_conflict", "fail"))
    try:
        result = await run_in_threadpool(
            carry_out_promotion,
            state.settings,
            _run_ref(run_id),
            False,
            on_conflict,
            f"api-key:{viewer.name}",
        )
    except ActionRefused as exc:
        return _promotion_page(
            request,
            run_id,
            getattr(exc.error, "result", None),
            status=exc.status,
            flash=[str(exc)],
            plan=False,
        )
    said = "promoted" if result.status == "succeeded" else f"promotion {result.status}"
    return _promotion_page(request, run_id, result, status=200, flash=[said], plan=False)


@router.post("/promotions/{promotion_id}/rollback")
async def rollback(request: Request, promotion_id: str) -> Response:
    viewer, form = await posted(request, "promote")
    state = _api_state(request)
    if not re.match(RUN_ID, promotion_id):
        raise WebError(404, f"{promotion_id[:64]!r} is not a promotion id")
    try:
        result = await run_in_threadpool(
            carry_out_rollback,
            state.settings,
            promotion_id,
            False,
            first(form, "force") == "true",
            f"api-key:{viewer.name}",
        )
    except ActionRefused as exc:
        raise WebError(exc.status, str(exc)) from None
    done = "rolled-back" if result.status == "rolled_back" else "rollback-partial"
    return RedirectResponse(f"/promotions?done={done}", status_code=303)
