"""A run's files through the HTTP API and the web UI, when they are in an object store:
a real ``omnilab serve`` and ``omnilab worker``, real Redis, PostgreSQL and Garage. The
run's folder is removed before reading, as it would be missing on another host."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.test_runs import sse_events
from tests.support import wait_until
from tests.support.artifacts import ARTIFACT_EXPERIMENTS, CURVE, blob, forget_locally, sha256
from tests.support.garage_server import S3Artifacts
from tests.support.queue_helpers import Api, RedisServer, Service, make_key, server_env, start_api
from tests.support.web import Browser


@pytest.fixture
def writer_api(
    s3_artifacts: S3Artifacts, workdir: Path, tracking_db: str, redis_server: RedisServer
) -> Iterator[Api]:
    """``omnilab serve`` whose experiments are the Writer's, with the test's store."""
    server = start_api(workdir, server_env(redis_server, ARTIFACT_EXPERIMENTS))
    yield server
    server.service.stop()


def _worker(start_worker: Callable[..., Service]) -> Service:
    return start_worker(env={"OMNILAB_EXPERIMENTS_DIR": str(ARTIFACT_EXPERIMENTS)})


def _raw_get(url: str, path: str, key: str) -> tuple[int, str]:
    """A GET of exactly ``path`` (no client normalising ``..`` or decoding ``%2F``)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    conn.close()
    return response.status, body


def test_a_queued_runs_files_are_read_through_the_api_from_the_store(
    s3_artifacts: S3Artifacts, writer_api: Api, start_worker: Callable[..., Service]
) -> None:
    api = writer_api
    run_id = api.queue("Writer", {"size": 300000, "lines": 3})
    _worker(start_worker)
    done = api.wait_status(run_id, "succeeded")
    recorded = {a["path"]: a for a in done["artifacts"]}
    assert recorded["blob.bin"]["sha256"] == sha256(blob(300000))
    assert recorded["plots/curve.csv"]["url"] == f"/v1/runs/{run_id}/artifacts/plots/curve.csv"
    log = s3_artifacts.object(run_id, "logs/output.log")
    # The worker's own lines are in it, its last one (the outcome's) included.
    assert b"line 2\n" in log and b"omnilab: succeeded" in log
    forget_locally({"run_dir": str(Path.cwd() / "runs" / run_id)})

    base = f"/v1/runs/{run_id}/artifacts"
    with api.client("read") as client:
        got = client.get(f"{base}/blob.bin")
        assert got.status_code == 200, got.text
        assert got.content == blob(300000)
        assert got.headers["content-length"] == "300000"
        assert got.headers["content-disposition"].startswith('attachment; filename="blob.bin"')
        digest = base64.b64encode(bytes.fromhex(sha256(blob(300000)))).decode()
        assert got.headers["repr-digest"] == f"sha-256=:{digest}:"
        assert client.get(f"{base}/plots/curve.csv").content == CURVE
        # A presigned URL of the store instead: the download needs no key of ours.
        moved = client.get(f"{base}/plots/curve.csv", params={"redirect": "true"})
        assert moved.status_code == 307
        link = moved.headers["location"]
        assert link.startswith(s3_artifacts.server.endpoint) and "X-Amz-Signature" in link
        fetched = httpx.get(link, timeout=30)
        assert fetched.status_code == 200 and fetched.content == CURVE
        assert fetched.headers["content-disposition"].startswith("attachment")
        unknown = client.get(f"{base}/nope.txt")
        assert unknown.status_code == 404
        assert "has no artifact 'nope.txt'" in unknown.json()["detail"]
        # The complete log, from the store: the run's folder is not on this host.
        with client.stream("GET", f"/v1/runs/{run_id}/logs", params={"follow": "false"}) as s:
            events = list(sse_events(s))
    lines = [data for kind, _, data in events if kind == "log"]
    assert {"line 0", "line 1", "line 2"} <= set(lines)
    assert any(line.startswith("omnilab: succeeded") for line in lines)
    end = json.loads(next(data for kind, _, data in events if kind == "end"))
    assert end["status"] == "succeeded" and end["log_found"] is True
    assert "".join(line + "\n" for line in lines).encode() == log

    key = api.keys["read"]
    for raw in (
        f"{base}/..%2F..%2Flogs%2Foutput.log",
        f"{base}/%2e%2e/%2e%2e/logs/output.log",
        f"{base}/%2Fetc%2Fpasswd",
        f"{base}/a%5C..%5Cb",
        f"{base}/",
    ):
        status, body = _raw_get(api.url, raw, key)
        assert status == 404, (raw, status, body)
        assert "line 0" not in body
    status, body = _raw_get(api.url, f"{base}/..%2F..%2Flogs%2Foutput.log", key)
    assert "is not an artifact path" in json.loads(body)["detail"]
    with api.anonymous() as anonymous:
        assert anonymous.get(f"{base}/blob.bin").status_code == 401

    # The web UI's download link and log, for the same run.
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read", env=api.env)).status_code == 303
        page = browser.get(f"/runs/{run_id}")
        assert page.status_code == 200
        assert f'href="/runs/{run_id}/artifacts/plots/curve.csv"' in page.text
        assert "line 2" in page.text
        download = browser.get(f"/runs/{run_id}/artifacts/plots/curve.csv")
        assert download.status_code == 200 and download.content == CURVE
        assert download.headers["content-disposition"].startswith("attachment")
        missing = browser.get(f"/runs/{run_id}/artifacts/nope.txt")
        assert missing.status_code == 404


def test_a_cancelled_runs_files_and_last_lines_reach_the_store(
    s3_artifacts: S3Artifacts, writer_api: Api, start_worker: Callable[..., Service]
) -> None:
    api = writer_api
    run_id = api.queue("Writer", {"pause": 120})
    _worker(start_worker)
    api.wait_status(run_id, "running")
    with api.client("run") as client:
        assert wait_until(
            lambda: (Path.cwd() / "runs" / run_id / "artifacts" / "blob.bin").exists(), 30
        )
        assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 202
    api.wait_status(run_id, "cancelled")
    assert s3_artifacts.object(run_id, "artifacts/plots/curve.csv") == CURVE
    seen: list[bytes] = []

    def told() -> bool:
        seen[:] = [s3_artifacts.object(run_id, "logs/output.log")]
        return b"cancelled on request" in seen[0]

    assert wait_until(told, timeout=30), seen
    local = (Path.cwd() / "runs" / run_id / "logs" / "output.log").read_bytes()
    assert seen[0] == local
