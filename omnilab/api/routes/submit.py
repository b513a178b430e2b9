"""``POST /v1/runs``: queue a run.

The path that takes runs by the hundred per second, so the route reads its own request:
no FastAPI dependencies, body model or response model to solve per request, but the same
checks in the same order of precedence, the same errors, and an OpenAPI document that
says exactly what it did when FastAPI derived it from the signature (``openapi_extra``
below; the request body is then replaced by one schema per experiment, see
:mod:`omnilab.api.openapi`). The run is recorded by the group commit
(:mod:`omnilab.api.group_commit`) and answered 202 once its row is committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import StringConstraints, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from omnilab.api.appstate import ApiState
from omnilab.api.auth import SECURITY, authorize, bearer_token
from omnilab.api.models import QueueOut, RunOut, RunRequest
from omnilab.api.responses import errors
from omnilab.api.routes.runs import links, run_out
from omnilab.catalog import CatalogEntry, UnknownExperiment
from omnilab.params import as_json as params_as_json
from omnilab.queue.placement import Placement
from omnilab.queue.submit import queue_run
from omnilab.runner import new_run_id
from omnilab.tracking import queued_runs
from omnilab.tracking.queued_runs import NewRun, QueueInfo, QueueStore
from omnilab.tracking.records import RunRecord


class OwnRequestRoute(APIRoute):
    """A route whose endpoint takes the Request and returns the Response itself, called
    as is: FastAPI has no dependencies, body or response model to solve for it (the
    documented way to customise a route, ``get_route_handler``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


router = APIRouter(prefix="/v1", tags=["runs"], route_class=OwnRequestRoute)

IDEMPOTENCY_KEY_MAX = 200
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]+$"
IDEMPOTENCY_KEY_DOC = "Send the same value when retrying a request: the run is queued once."

#: What FastAPI would document for ``body: RunRequest`` and the ``Idempotency-Key``
#: header parameter; checked against FastAPI's own rendering by the tests.
OPENAPI = {
    "parameters": [
        {
            "name": "idempotency-key",
            "in": "header",
            "required": False,
            "schema": {
                "anyOf": [
                    {
                        "type": "string",
                        "maxLength": IDEMPOTENCY_KEY_MAX,
                        "pattern": IDEMPOTENCY_KEY_PATTERN,
                    },
                    {"type": "null"},
                ],
                "description": IDEMPOTENCY_KEY_DOC,
                "title": "Idempotency-Key",
            },
            "description": IDEMPOTENCY_KEY_DOC,
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunRequest"}}},
    },
    "security": SECURITY,
}


@router.post(
    "/runs",
    status_code=202,
    response_model=None,
    responses={
        202: {"model": RunOut, "description": "Queued: the run, with its id and links."},
        200: {"model": RunOut, "description": "Seen before (same Idempotency-Key): that run."},
        **errors(400, 401, 403, 404, 413, 422, 503),
    },
    openapi_extra=OPENAPI,
)
async def queue(request: Request) -> Response:
    """Queue a run; 202 with the run, whose status is `queued` until a worker takes it.

    The request body's `params` are validated against the experiment's Params model (its
    JSON Schema: GET /v1/experiments/{name}); every invalid field is named in the 422.
    """
    state: ApiState = request.app.state.omnilab
    # FastAPI's order of precedence: a body that cannot be read, then the key (401,
    # 403), then every invalid header and body field in one 422, then the experiment.
    document = _json_body(request, await request.body())
    key = await authorize(request, bearer_token(request), "run")
    idempotency_key, problems = _idempotency_key(request)
    body = None
    if document is _NO_BODY:
        problems.append({"loc": ["body"], "msg": "Field required", "type": "missing"})
    else:
        try:
            # As FastAPI validates a body (from_attributes: a JSON value that is not an
            # object is "not a valid dictionary or object to extract fields from").
            body = RunRequest.model_validate(document, from_attributes=True)
        except ValidationError as exc:
            problems += _errors(exc, "body")
    if problems or body is None:
        raise RequestValidationError(problems)
    try:
        entry = state.catalog.get(body.experiment)
    except UnknownExperiment as exc:
        raise HTTPException(404, str(exc)) from None
    params = valid_params(entry, body.params)
    retries = body.retries if body.retries is not None else state.settings.run_retries
    owner = f"api-key:{key.name}"
    labels = (body.name, list(dict.fromkeys(body.tags)))
    if idempotency_key is not None:
        record, created, info = await run_in_threadpool(
            _queue_once, state, entry, params, retries, owner, key.id, idempotency_key, labels
        )
        if not created:
            _check_same_request(record, info, entry, params, retries, labels)
        return _answer(run_out(record, info), 202 if created else 200)
    return _answer(await record_run(state, entry, params, retries, key.id, owner, labels), 202)


async def record_run(
    state: ApiState,
    entry: CatalogEntry,
    params: dict[str, Any],
    retries: int,
    submitted_by: str,
    owner: str,
    labels: tuple[str | None, list[str]] = (None, []),
) -> RunOut:
    """Queue a run whose params are valid (:func:`valid_params`) through the group
    commit; the run as ``GET /v1/runs/{id}`` would show it now. ``POST /v1/runs`` and the
    web UI's queue form both queue through it.

    A run that requires nothing goes to the shared queue without a look at the store; one
    with requirements is placed first (:mod:`omnilab.queue.placement`): on a host's queue,
    or recorded as waiting for capacity, with the reason, and not sent."""
    assert state.writer is not None, "the API state is not open"
    placement = Placement(queue=state.broker.queue)
    if entry.requires is not None:
        placement = await run_in_threadpool(state.placer.place, entry.requires)
    run = NewRun(
        id=new_run_id(),
        experiment=entry.name,
        source=entry.source,
        params=params,
        owner=owner,
        queue=placement.queue,
        max_attempts=1 + retries,
        submitted_by=submitted_by,
        name=labels[0],
        tags=tuple(labels[1]),
        requires=entry.requires.as_json() if entry.requires is not None else None,
        code_sha256=entry.sha256 or None,
        waiting=placement.waiting,
        host=placement.host,
    )
    created_at = await state.writer.write(run)
    # What the rows hold is known: the run as GET /v1/runs/{id} would show it now.
    queued = QueueOut(
        queue=run.queue,
        host=run.host,
        attempt=0,
        max_attempts=run.max_attempts,
        queued_at=created_at,
    )
    return RunOut(
        id=run.id,
        experiment=run.experiment,
        name=run.name,
        tags=list(run.tags),
        status="queued",
        params=params,
        owner=owner,
        created_at=created_at,
        queue=queued,
        requires=run.requires,
        code_sha256=run.code_sha256,
        waiting=run.waiting,
        links=links(run.id),
    )


def _answer(run: RunOut, status: int) -> Response:
    return Response(
        run.model_dump_json().encode(),
        status_code=status,
        headers={"Location": f"/v1/runs/{run.id}"},
        media_type="application/json",
    )


_NO_BODY = object()


def _json_body(request: Request, raw: bytes) -> Any:
    """The body as FastAPI reads it for a JSON model: parsed when the content type is
    JSON, else the bytes themselves (which the model then refuses); ``_NO_BODY`` when
    there is none."""
    if not raw:
        return _NO_BODY
    content_type = request.headers.get("content-type")
    if not content_type:
        return raw
    if content_type != "application/json":  # what clients send, known without parsing
        message = Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() != "application" or not (
            subtype == "json" or subtype.endswith("+json")
        ):
            return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"loc": ["body", exc.pos], "msg": "JSON decode error", "type": "json_invalid"}]
        ) from None
    except (ValueError, RecursionError):  # not UTF-8, nested too deep
        raise HTTPException(400, "There was an error parsing the body") from None


_IDEMPOTENCY_KEY_TYPE: TypeAdapter[str] = TypeAdapter(
    Annotated[
        str, StringConstraints(max_length=IDEMPOTENCY_KEY_MAX, pattern=IDEMPOTENCY_KEY_PATTERN)
    ]
)


def _idempotency_key(request: Request) -> tuple[str | None, list[dict[str, Any]]]:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None, []
    try:
        return _IDEMPOTENCY_KEY_TYPE.validate_python(value), []
    except ValidationError as exc:
        return None, _errors(exc, "header", "idempotency-key")


def _errors(error: ValidationError, *prefix: str | int) -> list[dict[str, Any]]:
    """pydantic's errors as FastAPI shows its own 422s, minus the offending input (which
    may be anything, even a value JSON cannot carry back)."""
    return [
        {"loc": [*prefix, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]


def valid_params(entry: CatalogEntry, given: dict[str, Any]) -> dict[str, Any]:
    """The experiment's params, validated and with their defaults, as JSON values; a
    RequestValidationError naming each invalid field (``loc``: body, params, name)."""
    try:
        # Strict, as JSON: `true` is not an int and "5" not a number, whatever the
        # CLI's lenient -p parsing would make of them; 3.0 is an integer, as in JSON Schema.
        text = json.dumps(_integral(given))
        values = entry.cls.Params.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems = _errors(exc, "body", "params")
        for problem in problems:
            if problem["type"] == "extra_forbidden":
                problem["msg"] = "unknown parameter"
        raise RequestValidationError(problems) from None
    params: dict[str, Any] = params_as_json(values)
    unstorable = queued_runs.jsonable_params(params)
    if unstorable:
        raise RequestValidationError(
            [{"loc": ["body", "params"], "msg": unstorable, "type": "value_error"}]
        )
    return params


def _integral(value: Any) -> Any:
    """Whole floats (3.0) as ints, which strict validation then accepts for int fields
    (and float fields accept ints)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _check_same_request(
    record: RunRecord,
    info: QueueInfo | None,
    entry: CatalogEntry,
    params: dict[str, Any],
    retries: int,
    labels: tuple[str | None, list[str]] = (None, []),
) -> None:
    """A key sent again must come with the same request: a client retrying gets its
    run, but a key reused for another request is a client's bug, which answering with
    the first run would hide (422, as the IETF's Idempotency-Key draft says). Compared:
    what the request asks for once validated (experiment, params with their defaults,
    retries), so `{}` and the defaults written out are the same request."""
    differs = [
        name
        for name, then, now in (
            ("experiment", record.experiment, entry.name),
            ("params", record.params, params),
            ("retries", None if info is None else info.max_attempts - 1, retries),
            ("name", record.name, labels[0]),
            ("tags", record.tags, labels[1]),
        )
        if then is not None and then != now
    ]
    if differs:
        raise RequestValidationError(
            [
                {
                    "loc": ["header", "idempotency-key"],
                    "msg": f"this key queued run {record.id} with another "
                    f"{' and '.join(differs)}; send a new key for a new request",
                    "type": "idempotency_key_reused",
                }
            ]
        )


def _queue_once(
    state: ApiState,
    entry: CatalogEntry,
    params: dict[str, Any],
    retries: int,
    owner: str,
    submitted_by: str,
    idempotency_key: str,
    labels: tuple[str | None, list[str]] = (None, []),
) -> tuple[RunRecord, bool, QueueInfo | None]:
    with state.db() as store:
        record, created, placement = queue_run(
            store,
            state.broker,
            entry,
            params,
            retries=retries,
            owner=owner,
            submitted_by=submitted_by,
            idempotency_key=idempotency_key,
            sender=state.sender,
            name=labels[0],
            tags=labels[1],
            placer=state.placer,
        )
        if not created:
            return record, created, QueueStore(store).queue_info([record.id]).get(record.id)
    # Queued now: what its queue row holds is known.
    assert record.created_at is not None, "set by the INSERT that queued it"
    info = QueueInfo(
        queue=placement.queue,
        host=placement.host,
        attempt=0,
        max_attempts=1 + retries,
        delivery=0,
        queued_at=record.created_at,
        submitted_by=submitted_by,
    )
    return record, created, info
