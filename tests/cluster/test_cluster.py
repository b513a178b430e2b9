"""omnilab on several hosts: containers on a private network (tests/support/cluster.py).

One cluster per module (starting it is most of the cost): PostgreSQL, Redis, an S3 server,
an API host and worker hosts. The tests run in the order written; each leaves the
cluster as it found it (every worker host up and connected).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.cluster import Cluster, cluster, wait_for

WORKERS = ("worker-a", "worker-b")
FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    label = uuid.uuid4().hex[:12]
    with cluster(label, tmp_path_factory.mktemp("cluster")) as made:
        made.start_databases()
        made.start_s3()
        url = made.start_api()
        for name in WORKERS:
            made.start_worker(name, "--concurrency", "1")
        yield made, url


def queue(client: httpx.Client, experiment: str, **body: Any) -> str:
    response = client.post("/v1/runs", json={"experiment": experiment, **body})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def run_of(client: httpx.Client, run_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_finished(
    made: Cluster, client: httpx.Client, run_ids: list[str], timeout: float = 120
) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}

    def done() -> bool:
        for run_id in run_ids:
            seen[run_id] = run_of(client, run_id)
        return all(r["status"] in FINISHED for r in seen.values())

    wait_for(done, timeout, f"runs {run_ids} to finish", made, "api", *WORKERS)
    return seen


def outcomes(made: Cluster, run_id: str) -> list[str]:
    """The run's outcome as the tracking store holds it: one row per run, whatever happened."""
    code, out = made.exec(
        "pg",
        [
            "psql",
            "-U",
            "postgres",
            "-At",
            "-c",
            f"SELECT status FROM omnilab.runs WHERE id = '{run_id}'",
        ],
    )
    assert code == 0, out
    return out.split()


def test_runs_spread_over_worker_hosts(hosts: tuple[Cluster, str]) -> None:
    made, url = hosts
    with made.api(url) as client:
        run_ids = [queue(client, "Where", params={"lines": 3, "pause": 0.5}) for _ in range(6)]
        runs = wait_finished(made, client, run_ids)
    assert {r["status"] for r in runs.values()} == {"succeeded"}, runs
    ran_on = [r["summary"]["host"] for r in runs.values()]
    # Each worker host takes one run at a time, and the runs take 1.5 s each: six of them
    # cannot all go to one host while the other waits idle.
    assert set(ran_on) == set(WORKERS), ran_on
    for run_id, run in runs.items():
        assert run["environment"]["hostname"] == run["summary"]["host"]
        assert outcomes(made, run_id) == ["succeeded"]
        assert run["queue"]["attempt"] == 1


def test_log_of_a_run_on_another_host(hosts: tuple[Cluster, str]) -> None:
    """The API host has no run folder of the workers': the log comes through what every
    host reaches (Redis while it runs, the object store after)."""
    made, url = hosts
    with made.api(url) as client:
        run_id = queue(client, "Where", params={"lines": 4, "pause": 0.2})
        run = wait_finished(made, client, [run_id])[run_id]
        response = client.get(f"/v1/runs/{run_id}/logs", params={"follow": "false"})
    assert response.status_code == 200, response.text
    for i in range(4):
        assert f"line {i} on {run['summary']['host']}" in response.text
