"""``omnilab ui``: the pages alone on a local tracking store, read-only, without Redis."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from tests.support import OMNILAB, free_port, run_cli, wait_until
from tests.support.web import Browser, record_run, run_ids


def test_omnilab_ui_serves_the_stores_runs_read_only_without_redis(
    tracking_db: str, workdir: Path
) -> None:
    run_id = record_run(
        tracking_db, workdir / "runs", status="running", params={"lr": 0.1}, log="one\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [str(OMNILAB), "ui", "--port", str(port)],
        env={
            **__import__("os").environ,
            # Nothing answers there: the UI must not need it.
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/static/omnilab.css", timeout=1).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        assert wait_until(up, timeout=30) and proc.poll() is None
        with Browser(url) as browser:
            page = browser.get("/")  # no sign-in
            assert page.status_code == 200 and run_ids(page.text) == [run_id]
            assert "local, read-only" in page.text
            run = browser.get(f"/runs/{run_id}")
            assert re.search(r'id="run-status"[^>]*>running<', run.text)
            assert 'id="cancel"' not in run.text and 'id="promote"' not in run.text
            assert browser.get("/login").headers["location"] == "/"
            refused = browser.post(f"/runs/{run_id}/cancel", {"_csrf": "x"})
            assert refused.status_code == 403 and "read-only" in refused.text
            assert browser.get("/experiments/Quick").status_code == 404
            assert browser.get("/v1/runs").status_code == 404  # no API here
            assert browser.get("/workers").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    help_text = run_cli("ui", "--help", env={"COLUMNS": "120"}).stdout
    assert "read-only" in help_text and "no sign-in" in help_text and "127.0.0.1" in help_text
