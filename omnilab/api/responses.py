"""Responses shared by the routes: error documentation and JSON without NaN."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse

from omnilab.api.models import Problem

_MEANING = {
    400: "The request could not be read.",
    401: "No API key, or an invalid or revoked one.",
    403: "The API key lacks the scope this endpoint needs.",
    404: "No such experiment or run.",
    409: "The run is in a state that does not allow this.",
    413: "The request body is larger than the server accepts.",
    422: "Invalid input; `detail` names each field.",
    502: "The artifact store refused or could not be reached.",
    503: "The tracking store or the queue cannot be reached.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes a route can return."""
    return {code: {"model": Problem, "description": _MEANING[code]} for code in codes}


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (metrics may hold them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """Like JSONResponse, with NaN and infinities as null instead of a server error."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:
            return json.dumps(
                finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")
