"""omnilab on several hosts: containers on a private network (tests/support/cluster.py).

One cluster per module (starting it is most of the cost): PostgreSQL, Redis, an S3 server,
an API host and worker hosts. The tests run in the order written; each leaves the
cluster as it found it (every worker host up and connected).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.cluster import Cluster, cluster, wait_for

#: One cluster for the module, so its tests run in one test process, one after another;
#: starting the cluster and a host lost and found take minutes, not the default limit.
pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.timeout(900)]

WORKERS = ("worker-a", "worker-b")
FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    label = uuid.uuid4().hex[:12]
    with cluster(label, tmp_path_factory.mktemp("cluster")) as made:
        made.start_databases()
        made.start_s3()
        url = made.start_api()
        made.start_api("api-2")
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
    # The artifacts went to the object store: either API host serves any run's files,
    # though neither ran a run nor shares a folder with a worker.
    for api in (url, made.url("api-2")):
        with made.api(api) as client:
            for run_id, run in runs.items():
                got = client.get(f"/v1/runs/{run_id}/artifacts/host.txt")
                assert got.status_code == 200, got.text
                assert got.text == run["summary"]["host"]


def test_log_of_a_run_on_another_host(hosts: tuple[Cluster, str]) -> None:
    """The API hosts have no run folder of the workers': a running run's log is followed
    live through Redis from one API host, and the complete log comes from the object
    store afterwards on the other."""
    made, url = hosts
    with made.api(url) as client:
        run_id = queue(client, "Where", params={"lines": 6, "pause": 0.5})
        seen: list[str] = []
        with client.stream("GET", f"/v1/runs/{run_id}/logs", timeout=60) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: line "):
                    seen.append(line)
                if line.startswith("event: end"):
                    break
        run = run_of(client, run_id)
    host = run["summary"]["host"]
    assert len(seen) == 6, seen
    assert all(f"on {host}" in line for line in seen)
    with made.api(made.url("api-2")) as client:
        response = client.get(f"/v1/runs/{run_id}/logs", params={"follow": "false"})
    assert response.status_code == 200, response.text
    for i in range(6):
        assert response.text.count(f"line {i} on {host}") == 1


def running_on(made: Cluster, client: httpx.Client, run_id: str, attempt: int) -> str:
    """Wait until attempt ``attempt`` of the run is running; the host it runs on."""
    host: list[str] = []

    def started() -> bool:
        run = run_of(client, run_id)
        worker = (run.get("queue") or {}).get("worker") or ""
        if run["status"] != "running" or run["queue"]["attempt"] != attempt:
            return False
        host[:] = [h for h in WORKERS if worker.startswith(f"{h}-")]
        return bool(host)

    wait_for(started, 60, f"attempt {attempt} of {run_id} to run", made, "api", *WORKERS)
    return host[0]


def stacks_on(made: Cluster, host: str) -> list[dict[str, Any]]:
    code, out = made.exec(host, ["omnilab", "stack", "ls", "--json"])
    assert code == 0, out
    return list(json.loads(out))


def ready_lines(made: Cluster, host: str) -> int:
    """How many times a worker on ``host`` said it takes work (once per start)."""
    return made.logs(host).count(": ready: ")


def wait_back(made: Cluster, host: str, before: int) -> None:
    """Wait until the worker started again on ``host`` takes runs and host tasks."""
    back = lambda: ready_lines(made, host) > before  # noqa: E731
    wait_for(back, 90, f"the worker on {host} back and ready", made, host)


def other(host: str) -> str:
    return next(h for h in WORKERS if h != host)


def test_killed_worker_host(hosts: tuple[Cluster, str]) -> None:
    """`docker kill` of the host running a run: the run is queued again and succeeds on
    the other host, recorded once; the killed host, back, removes the stack it left."""
    made, url = hosts
    with made.api(url) as client:
        run_id = queue(client, "Slow", params={"seconds": 8}, retries=1)
        victim = running_on(made, client, run_id, attempt=1)
        wait_for(lambda: bool(stacks_on(made, victim)), 30, "the run's stack", made, victim)
        readied = ready_lines(made, victim)
        made.kill(victim)
        run = wait_finished(made, client, [run_id], timeout=120)[run_id]
        assert run["status"] == "succeeded", (run["error"], run["queue"])
        assert run["summary"]["host"] == other(victim)
        assert run["queue"]["attempt"] == 2
        assert outcomes(made, run_id) == ["succeeded"]

        made.restart(victim)
        wait_back(made, victim, readied)
        wait_for(lambda: not stacks_on(made, victim), 60, "the stack removed", made, victim)
        assert outcomes(made, run_id) == ["succeeded"]


#: On a host, through omnilab's own stores: hold the sweepers' lock and the promotions'
#: lock, as a sweep in progress does, until the host is cut off (and a while after).
HOLD_LOCKS = """
import pathlib, time
from omnilab.promote.records import PromotionStore
from omnilab.tracking.queued_runs import QueueStore
from omnilab.tracking.store import TrackingStore

store = TrackingStore.open()
while True:
    with QueueStore(store).sweep_lock() as swept, PromotionStore(store).lock_if_free() as held:
        if swept and held:
            pathlib.Path("/tmp/locks-held").touch()
            time.sleep(180)
            break
    time.sleep(0.05)
"""


def test_worker_host_cut_off(hosts: tuple[Cluster, str]) -> None:
    """`docker network disconnect` of the host running a run, then reconnect: the run is
    taken over by the other host; the cut-off host's attempt, finished meanwhile, records
    no second outcome once it can reach the store again.

    The host is cut off while it holds the sweepers' and the promotions' locks (a sweep
    was in progress): the tracking database drops its session once it stops answering,
    or no other host could sweep (end the lost attempt) or promote again."""
    made, url = hosts
    with made.api(url) as client:
        run_id = queue(client, "Slow", params={"seconds": 12}, retries=1)
        cut = running_on(made, client, run_id, attempt=1)
        made.hosts[cut].exec_run(["python3", "-c", HOLD_LOCKS], detach=True)
        wait_for(
            lambda: made.exec(cut, ["test", "-e", "/tmp/locks-held"])[0] == 0,
            30,
            "the locks held",
            made,
            cut,
        )
        made.disconnect(cut)
        try:
            run = wait_finished(made, client, [run_id], timeout=120)[run_id]
        finally:
            made.reconnect(cut)
        assert run["status"] == "succeeded", (run["error"], run["queue"])
        assert run["summary"]["host"] == other(cut)
        assert run["queue"]["attempt"] == 2
        # Back on the network, the cut-off worker reaches the store again: it beats, and
        # its horse (whose run ended while it was cut off) tries to record its outcome.
        wait_for(lambda: _alive(client, cut), 60, f"{cut} alive again", made, cut, "api")
        time.sleep(3)  # what a late record would take to land
        after = run_of(client, run_id)
        assert after["status"] == "succeeded"
        assert after["summary"]["host"] == other(cut)
        assert after["queue"]["attempt"] == 2
        assert outcomes(made, run_id) == ["succeeded"]


def _alive(client: httpx.Client, host: str) -> bool:
    response = client.get("/v1/workers")
    assert response.status_code == 200, response.text
    return any(w["host"] == host and w["status"] == "alive" for w in response.json()["workers"])


def test_promotion_on_the_host_that_keeps_the_data(hosts: tuple[Cluster, str]) -> None:
    """A run kept on a worker host is promoted through the API (on another host) by that
    host's worker; with that host down, the API says which host and what to do."""
    made, url = hosts
    with made.api(url) as client:
        run_id = queue(client, "Kept", params={"tag": "first"})
        run = wait_finished(made, client, [run_id])[run_id]
        assert run["status"] == "succeeded", (run["error"], run["queue"])
        keeper = run["summary"]["host"]
        response = client.post(f"/v1/runs/{run_id}/promote", json={})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["status"] == "succeeded", result
        record = client.get(f"/v1/promotions/{result['id']}").json()
        assert record["host"] == keeper
    code, out = made.exec(
        "redis",
        ["redis-cli", "-a", made.redis_password, "--no-auth-warning", "get", "cluster:first:7"],
    )
    assert code == 0 and out.strip() == keeper, out

    with made.api(url) as client:
        run_id = queue(client, "Kept", params={"tag": "second"})
        run = wait_finished(made, client, [run_id])[run_id]
        keeper = run["summary"]["host"]
        readied = ready_lines(made, keeper)
        made.kill(keeper)
        try:
            wait_for(lambda: not _alive(client, keeper), 30, f"{keeper} lost", made, "api")
            response = client.post(f"/v1/runs/{run_id}/promote", json={"on_conflict": "replace"})
            assert response.status_code == 503, response.text
            message = response.json()["detail"]
            assert f"on host {keeper}" in message and "omnilab worker" in message, message
            assert "\n" not in message
        finally:
            made.restart(keeper)
            # Recorded alive from its start; its task lane takes the promotion once ready.
            wait_back(made, keeper, readied)
        # Back: the run's kept data is still there, and the promotion goes through
        # (replacing what the first promotion put in production under the same pattern).
        promote = {"on_conflict": "replace"}
        # The killed host's lane may have left a blocked read open on Redis that takes this
        # first task and never runs it: the API sends it again (hosttasks._Waiter._lost).
        response = client.post(f"/v1/runs/{run_id}/promote", json=promote)
        assert response.status_code == 200, (
            f"{response.text}\n--- {keeper}:\n{made.logs(keeper)[-4000:]}"
        )
        assert response.json()["status"] == "succeeded"


def test_gpu_run_without_a_gpu_worker_waits(hosts: tuple[Cluster, str]) -> None:
    """No worker of the cluster has a GPU: the run is not taken, and says why."""
    made, url = hosts
    with made.api(url) as client:
        run_id = queue(client, "GpuOnly")
        wait_for(
            lambda: "waiting for capacity" in (run_of(client, run_id).get("waiting") or ""),
            30,
            "the run to say it waits",
            made,
            "api",
        )
        time.sleep(3)  # sweeps come and go: it is still not taken
        run = run_of(client, run_id)
        assert run["status"] == "queued"
        assert "GPU" in run["waiting"], run["waiting"]
        response = client.post(f"/v1/runs/{run_id}/cancel")
        assert response.status_code in (200, 202), response.text
