"""``Authorization: Bearer <key>`` on every endpoint but the health check.

401 when the key is missing, malformed, unknown or revoked; 403 when it lacks the scope
the endpoint needs (read, run or promote). A route declares its scope with one line:
``key: RunKey`` (or ``ReadKey``, ``PromoteKey``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool

from omnilab.tracking.api_keys import ApiKeyRecord

if TYPE_CHECKING:
    from omnilab.api.appstate import ApiState

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="olk_<id>_<secret>",
    description="An API key made with `omnilab api-key create`.",
)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def authorize(request: Request, token: str | None, scope: str) -> ApiKeyRecord:
    """The key check, for ``token`` (the Bearer credentials, None when there are none):
    401 or 403 as an HTTPException, else the key (also left in ``request.state``)."""
    if token is None:
        raise HTTPException(
            401,
            "missing API key: send 'Authorization: Bearer <key>' "
            "(make one with `omnilab api-key create`)",
            headers=_CHALLENGE,
        )
    state: ApiState = request.app.state.omnilab
    # Async, so that a key checked moments ago costs no trip to a worker thread.
    key = state.keys.cached(token)
    if key is None:
        key = await run_in_threadpool(state.keys.verify, token, state)
    if key is None:
        raise HTTPException(
            401,
            "invalid or revoked API key",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if scope not in key.scopes:
        raise HTTPException(
            403,
            f"API key {key.id} ({key.name}) lacks the {scope!r} scope; "
            f"it has: {', '.join(key.scopes)}",
        )
    request.state.api_key = key
    return key


def bearer_token(request: Request) -> str | None:
    """The credentials of ``Authorization: Bearer <key>``, read as ``bearer`` reads them
    (for routes that read their request themselves)."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if not token or scheme.lower() != "bearer":
        return None
    return token


#: The OpenAPI ``security`` of a route that calls :func:`authorize` itself.
SECURITY: list[dict[str, Any]] = [{"HTTPBearer": []}]


def require(scope: str) -> Callable[..., Awaitable[ApiKeyRecord]]:
    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKeyRecord:
        token = credentials.credentials if credentials is not None else None
        return await authorize(request, token, scope)

    return check


#: What a route takes to require a scope: ``key: RunKey``.
ReadKey = Annotated[ApiKeyRecord, Depends(require("read"))]
RunKey = Annotated[ApiKeyRecord, Depends(require("run"))]
PromoteKey = Annotated[ApiKeyRecord, Depends(require("promote"))]
