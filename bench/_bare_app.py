"""omnilab's API app with two more routes: bare FastAPI JSON endpoints (`async def` and
plain `def`), the peers `POST /v1/runs` is measured against in the same server process."""

from __future__ import annotations

import os
import uuid
from typing import Any

from fastapi import FastAPI

from omnilab.api import create_app
from omnilab.queue.sender_process import SenderProcess


def create() -> FastAPI:
    if os.environ.get("BENCH_SENDER_OFF"):
        # Attribution only (api_submit.py --sender-off): POST /v1/runs hands no message to
        # the sender process; the reconciler sends them later, in large batches.
        SenderProcess.put = lambda self, run_id, queue_name: None  # type: ignore[method-assign]
    app = create_app()

    @app.post("/bare", status_code=202)
    async def bare(body: dict[str, Any]) -> dict[str, Any]:
        """Reads a JSON body and answers JSON: no key check, no store, no queue."""
        return {"id": uuid.uuid4().hex, "experiment": body.get("experiment"), "status": "queued"}

    @app.post("/bare-sync", status_code=202)
    def bare_sync(body: dict[str, Any]) -> dict[str, Any]:
        """The same as a plain `def` (FastAPI runs it in a worker thread)."""
        return {"id": uuid.uuid4().hex, "experiment": body.get("experiment"), "status": "queued"}

    return app
