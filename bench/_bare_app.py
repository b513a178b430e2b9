"""omnilab's API app with one more route: a bare FastAPI JSON endpoint, the peer that
`POST /v1/runs` is measured against in the same server process."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI

from omnilab.api import create_app


def create() -> FastAPI:
    app = create_app()

    @app.post("/bare", status_code=202)
    async def bare(body: dict[str, Any]) -> dict[str, Any]:
        """Reads a JSON body and answers JSON: no key check, no store, no queue."""
        return {"id": uuid.uuid4().hex, "experiment": body.get("experiment"), "status": "queued"}

    return app
