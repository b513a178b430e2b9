"""The web UI's tests' helpers: a browser-like client that signs in, and runs recorded
straight into the test's tracking store (real PostgreSQL) with files on disk."""

from __future__ import annotations

import hashlib
import http.client
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from omnilab.tracking.records import ArtifactRecord, RunRecord
from omnilab.tracking.store import TrackingStore

CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


class Browser:
    """An httpx client that keeps cookies and does not follow redirects, as the tests
    look at each answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30, follow_redirects=False)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, data=data or {}, **kw)

    def sign_in(self, key: str, next_path: str = "/") -> httpx.Response:
        form = self.get("/login")
        assert form.status_code == 200, form.text
        token = CSRF.search(form.text)
        assert token, form.text
        return self.post("/login", {"key": key, "_csrf": token.group(1), "next": next_path})

    def csrf(self, path: str = "/") -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    def raw_get(self, raw_path: str) -> tuple[int, str]:
        """A GET of exactly ``raw_path`` (no client normalising ``..``), with the cookies."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        cookies = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        conn.request("GET", raw_path, headers={"Cookie": cookies})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        conn.close()
        return response.status, body


def record_run(
    dsn: str,
    root: Path,
    *,
    experiment: str = "Sweep",
    status: str = "succeeded",
    params: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    metrics: dict[str, list[float]] | None = None,
    log: str = "",
    artifacts: dict[str, bytes] | None = None,
    age_s: float = 0.0,
    **extra: Any,
) -> str:
    """A run as a finished (or running) run leaves it: its row, metrics, artifacts and
    its folder with logs/output.log and artifacts/."""
    run_id = uuid.uuid4().hex
    run_dir = root / run_id
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "artifacts").mkdir()
    (run_dir / "logs" / "output.log").write_text(log)
    created = datetime.now(UTC) - timedelta(seconds=age_s)
    record = RunRecord(
        id=run_id,
        experiment=experiment,
        status=status,  # type: ignore[arg-type]
        params=params or {},
        summary=summary,
        run_dir=str(run_dir),
        created_at=created,
        started_at=created + timedelta(seconds=1),
        finished_at=created + timedelta(seconds=3) if status != "running" else None,
        **extra,
    )
    with TrackingStore(dsn) as store:
        store.create_run(record)
        writer = store.metric_writer(run_id)
        rows = [
            (key, step, value, time.time())
            for key, values in (metrics or {}).items()
            for step, value in enumerate(values)
        ]
        if rows:
            writer(rows)
        writer.close()
        for name, content in (artifacts or {}).items():
            path = run_dir / "artifacts" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            store.record_artifact(
                run_id,
                ArtifactRecord(
                    path=name, size=len(content), sha256=hashlib.sha256(content).hexdigest()
                ),
            )
    return run_id


def run_ids(page: str) -> list[str]:
    """The run ids of the runs table's rows, in order."""
    return re.findall(r'<tr data-run-id="([0-9a-f]+)"', page)
