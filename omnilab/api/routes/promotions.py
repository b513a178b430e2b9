"""``/v1/runs/{id}/promote``, ``/v1/runs/{id}/discard`` and ``/v1/promotions``: a run's
results into production.

Promotion runs in the request (a thread of the server's pool): a plan takes about as long
as reopening the run's stack (a second or so), a promotion as long as its copy. The
answer is :class:`omnilab.promote.PromotionResult`, as ``omnilab promote --json`` prints
it. A conflict (``on_conflict=fail``), an item production cannot accept (the plan says
why and the fix) and a staged copy that does not match the run's data are a 409 that
carries the plan or outcome ("refused"); a failed copy or switch is a 502 that carries
how far it got (production is as before in every case).

A run whose data is kept on another host is promoted (planned, discarded) by that host's
worker, and a promotion is rolled back by the host that carried it out
(:mod:`omnilab.queue.handover`); the request waits for the outcome, which is answered as
above. A 503 says the host cannot take it (no live worker there, or the queue's Redis
cannot be reached: nothing was done), a 504 that it took it and gave no outcome in time.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from omnilab.api.auth import PromoteKey, ReadKey
from omnilab.api.models import RUN_ID, Problem
from omnilab.api.responses import SafeJSONResponse, errors
from omnilab.errors import OmnilabError, RunNotFound, UsageError
from omnilab.progress import QuietReporter
from omnilab.promote import (
    PromotionConflict,
    PromotionRecord,
    PromotionRefused,
    PromotionResult,
    PromotionStore,
    RollbackResult,
)
from omnilab.queue import handover
from omnilab.queue.hosttasks import HostTaskError, HostUnavailable
from omnilab.services.promotable import PromotionError

router = APIRouter(prefix="/v1", tags=["promotions"])

RunId = Path(pattern=RUN_ID, description="A run id, or a unique prefix of at least 4 characters.")
PromotionId = Path(
    pattern=RUN_ID, description="A promotion id, or a unique prefix of at least 4 characters."
)


class ProblemWithResult(Problem):
    """A refused or failed promotion: the one-line reason, and the plan or outcome."""

    result: dict[str, Any] | None = None


_FAILURES: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ProblemWithResult,
        "description": "Production holds a different item of that name (on_conflict=fail), "
        "production cannot accept an item (its reason says the fix), the staged copy did "
        "not match the run's data, or the run cannot be promoted (not succeeded, nothing "
        "declared, data gone).",
    },
    502: {
        "model": ProblemWithResult,
        "description": "A copy or a switch failed; production is as before. Or the host "
        "that holds the data failed to carry it out.",
    },
    503: {
        "model": ProblemWithResult,
        "description": "The tracking store or the queue cannot be reached; or the data is "
        "on another host that cannot take the work now (no live worker there: `detail` "
        "names the host and what to do). Nothing was done.",
    },
    504: {
        "model": ProblemWithResult,
        "description": "The data is on another host, whose worker took the work but gave "
        "no outcome in time (OMNILAB_HOST_TASK_TIMEOUT); it may still be at it.",
    },
}


class PromoteRequest(BaseModel):
    """How to promote: only plan it, and what to do with a name production already has."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    on_conflict: Literal["fail", "replace", "version"] = "fail"


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    #: Roll back even though production changed since the promotion.
    force: bool = False


def _settings(request: Request) -> Any:
    return request.app.state.omnilab.settings


def _problem(code: int, exc: OmnilabError) -> SafeJSONResponse:
    result = getattr(exc, "result", None)
    body = {"detail": str(exc), "result": result.model_dump(mode="json") if result else None}
    return SafeJSONResponse(body, status_code=code)


@router.post(
    "/runs/{run_id}/promote",
    operation_id="promote_run",
    response_model=PromotionResult,
    responses={**errors(400, 401, 403, 404, 413, 422), **_FAILURES},
)
def promote_run(
    request: Request, key: PromoteKey, body: PromoteRequest | None = None, run_id: str = RunId
) -> Any:
    """Plan (`dry_run`) or carry out the promotion of what the run's experiment declares
    in `promotes` into production: staged, verified, switched atomically, recorded."""
    body = body or PromoteRequest()
    try:
        return carry_out_promotion(
            _settings(request), run_id, body.dry_run, body.on_conflict, f"api-key:{key.name}"
        )
    except ActionRefused as exc:
        if exc.status == 404:
            raise HTTPException(404, str(exc)) from None
        return _problem(exc.status, exc.error)


class ActionRefused(Exception):
    """A promotion or rollback that did not happen: the HTTP status the API answers with
    and omnilab's error (which may carry the plan or outcome as ``result``)."""

    def __init__(self, status: int, error: OmnilabError) -> None:
        super().__init__(str(error))
        self.status = status
        self.error = error


def carry_out_promotion(
    settings: Any, run_id: str, dry_run: bool, on_conflict: str, actor: str
) -> PromotionResult:
    """What ``POST /v1/runs/{id}/promote`` and the web UI's plan and promote pages do,
    on the host that holds the run's data; a refusal is an :class:`ActionRefused` (404,
    409, 502, 503 or 504)."""
    try:
        return handover.promote(
            run_id,
            dry_run=dry_run,
            on_conflict=on_conflict,
            actor=actor,
            settings=settings,
            reporter=QuietReporter(),
        )
    except RunNotFound as exc:
        raise ActionRefused(404, exc) from None
    except (PromotionConflict, PromotionRefused) as exc:
        # Refused on purpose (a conflict, an item production cannot accept, a copy that
        # does not match): production's state is the cause, not a broken server.
        raise ActionRefused(409, exc) from None
    except UsageError as exc:
        raise ActionRefused(409, exc) from None
    except (PromotionError, HostTaskError) as exc:
        raise ActionRefused(502, exc) from None
    except HostUnavailable as exc:
        raise ActionRefused(exc.status, exc) from None


#: OpenAPI links: a listed promotion's id leads to its page and its rollback.
_FROM_LIST = {
    "GetPromotion": {
        "operationId": "get_promotion",
        "parameters": {"promotion_id": "$response.body#/0/id"},
    },
    "RollbackPromotion": {
        "operationId": "rollback_promotion",
        "parameters": {"promotion_id": "$response.body#/0/id"},
    },
}


@router.get(
    "/promotions",
    response_model=list[PromotionRecord],
    responses={200: {"links": _FROM_LIST}, **errors(401, 403, 404, 422, 503)},
)
def list_promotions(
    request: Request,
    key: ReadKey,
    run: str | None = Query(default=None, pattern=RUN_ID, description="Only this run's."),
    limit: int = Query(default=20, ge=1, le=500),
) -> list[PromotionRecord]:
    """Promotions, newest first: run, who, when, each item's plan, counts and checksums."""
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open(_settings(request)) as store:
        try:
            run_id = store.get_run(run).id if run else None
        except RunNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return PromotionStore(store).list(run_id=run_id, limit=limit)


@router.get(
    "/promotions/{promotion_id}",
    operation_id="get_promotion",
    response_model=PromotionRecord,
    responses={
        200: {
            "links": {
                "RollbackPromotion": {
                    "operationId": "rollback_promotion",
                    "parameters": {"promotion_id": "$response.body#/id"},
                }
            }
        },
        **errors(401, 403, 404, 422, 503),
    },
)
def get_promotion(request: Request, key: ReadKey, promotion_id: str = PromotionId) -> Any:
    """One promotion in full."""
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open(_settings(request)) as store:
        try:
            return PromotionStore(store).get(promotion_id)
        except UsageError as exc:
            raise HTTPException(404, str(exc)) from None


@router.post(
    "/promotions/{promotion_id}/rollback",
    operation_id="rollback_promotion",
    response_model=RollbackResult,
    responses={**errors(400, 401, 403, 404, 413, 422), **_FAILURES},
)
def rollback_promotion(
    request: Request,
    key: PromoteKey,
    body: RollbackRequest | None = None,
    promotion_id: str = PromotionId,
) -> Any:
    """Put back what a promotion replaced (refused if production changed since, unless
    `force`, or if a later promotion replaced the same item)."""
    body = body or RollbackRequest()
    try:
        return carry_out_rollback(
            _settings(request), promotion_id, body.dry_run, body.force, f"api-key:{key.name}"
        )
    except ActionRefused as exc:
        if exc.status == 404:
            raise HTTPException(404, str(exc)) from None
        return _problem(exc.status, exc.error)


def carry_out_rollback(
    settings: Any, promotion_id: str, dry_run: bool, force: bool, actor: str
) -> RollbackResult:
    """What ``POST /v1/promotions/{id}/rollback`` and the web UI's rollback button do, on
    the host that carried the promotion out; a refusal is an :class:`ActionRefused` (404,
    409, 502, 503 or 504)."""
    try:
        return handover.rollback(
            promotion_id,
            dry_run=dry_run,
            force=force,
            actor=actor,
            settings=settings,
            reporter=QuietReporter(),
        )
    except UsageError as exc:
        if "no promotion matches" in str(exc):
            raise ActionRefused(404, exc) from None
        raise ActionRefused(409, exc) from None
    except (PromotionError, HostTaskError) as exc:
        raise ActionRefused(502, exc) from None
    except HostUnavailable as exc:
        raise ActionRefused(exc.status, exc) from None


class DiscardResult(BaseModel):
    """A run's kept stack data, removed: it will not be promoted."""

    run_id: str
    #: Where the data was, on the host that held it.
    path: str
    state: Literal["discarded"]


@router.post(
    "/runs/{run_id}/discard",
    operation_id="discard_run",
    response_model=DiscardResult,
    responses={**errors(401, 403, 404, 422), **_FAILURES},
)
def discard_run(request: Request, key: PromoteKey, run_id: str = RunId) -> Any:
    """Give up promoting a run: remove the stack data kept for it (on the host that
    holds it), as `omnilab discard RUN` does. Refused (409) when it kept none, or it was
    already promoted, discarded or expired."""
    try:
        return carry_out_discard(_settings(request), run_id)
    except ActionRefused as exc:
        if exc.status == 404:
            raise HTTPException(404, str(exc)) from None
        return _problem(exc.status, exc.error)


def carry_out_discard(settings: Any, run_id: str) -> dict[str, Any]:
    """What ``POST /v1/runs/{id}/discard`` does; a refusal is an :class:`ActionRefused`."""
    try:
        return handover.discard(run_id, settings=settings, reporter=QuietReporter())
    except RunNotFound as exc:
        raise ActionRefused(404, exc) from None
    except UsageError as exc:
        raise ActionRefused(409, exc) from None
    except HostTaskError as exc:
        raise ActionRefused(502, exc) from None
    except HostUnavailable as exc:
        raise ActionRefused(exc.status, exc) from None
