"""The queue under failure: killed workers, Redis restarts, an API that dies mid-request,
several workers on one queue, GPUs handed out without overlap."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import redis
from rq import Queue

from omnilab.host import host_name
from tests.support import stack_processes, wait_until
from tests.support.queue_helpers import Api, RedisServer, server_env, start_api


def _wait_running_with_stack(api: Api, run_id: str) -> dict:
    run = api.wait_status(run_id, "running")
    assert wait_until(lambda: "sleeping" in _log(api, run_id), timeout=60)
    assert stack_processes(), "the run's stack should be up"
    return run


def _log(api: Api, run_id: str) -> str:
    with api.client("read") as client:
        return client.get(f"/v1/runs/{run_id}/logs", params={"follow": "false"}).text


def test_worker_killed_mid_run_fails_the_run_and_removes_its_stack(api: Api, start_worker) -> None:
    worker = start_worker()
    run_id = api.queue("Stacked", {"seconds": 300}, retries=0)
    _wait_running_with_stack(api, run_id)
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    assert wait_until(lambda: not stack_processes(), timeout=20), stack_processes()
    run = api.wait_status(run_id, "failed", timeout=30)
    assert "its worker" in run["error"] and "attempt 1 of 1" in run["error"]
    # No slot or horse of the killed worker is left.
    assert wait_until(lambda: _descendants_gone(worker.proc.pid), timeout=10)


def _descendants_gone(pid: int) -> bool:
    import psutil

    return not [
        p
        for p in psutil.process_iter(["cmdline"])
        if f"--parent {pid}" in " ".join(p.info["cmdline"] or [])
    ]


def test_worker_and_its_run_killed_together_are_cleaned_by_the_sweepers(
    api: Api, start_worker
) -> None:
    """Nothing of the worker gets to say anything (as when a machine's processes are all
    SIGKILLed): the stack's watcher removes the stack, and the API's sweep ends the run."""
    worker = start_worker()
    run_id = api.queue("Stacked", {"seconds": 300})
    run = _wait_running_with_stack(api, run_id)
    horse = run["environment"]["pid"]
    os.kill(horse, signal.SIGKILL)
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    assert wait_until(lambda: not stack_processes(), timeout=20), stack_processes()
    run = api.wait_status(run_id, "failed", timeout=30)
    assert "ended without recording an outcome" in run["error"] or "died" in run["error"]


def test_worker_killed_mid_run_requeues_it_with_retries(api: Api, start_worker) -> None:
    first = start_worker()
    run_id = api.queue("Stacked", {"seconds": 300}, retries=1)
    _wait_running_with_stack(api, run_id)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    assert wait_until(lambda: not stack_processes(), timeout=20)
    api.wait_status(run_id, "queued", timeout=30)
    second = start_worker()
    run = api.wait_status(run_id, "running", timeout=60)
    assert run["queue"]["attempt"] == 2
    assert run["queue"]["worker"].startswith(second.worker_id + "/")
    assert run["queue"]["history"][0]["attempt"] == 1
    assert "died" in run["queue"]["history"][0]["reason"]
    with api.client() as client:
        assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 202
    api.wait_status(run_id, "cancelled", timeout=30)
    assert wait_until(lambda: not stack_processes(), timeout=15)


def test_redis_restarted_between_record_and_send(
    api: Api, redis_server: RedisServer, start_worker
) -> None:
    redis_server.stop()
    run_id = api.queue("Quick", {"n": 2})  # recorded; the message cannot be sent
    assert api.run(run_id)["status"] == "queued"
    with api.anonymous() as client:
        health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["queue"] == "unreachable"
    redis_server.start()  # empty: whatever it had is gone
    start_worker()
    run = api.wait_status(run_id, "succeeded", timeout=60)
    assert run["queue"]["attempt"] == 1


def test_api_killed_between_record_and_send_is_repaired_at_start(
    workdir: Path, tracking_db: str, redis_server: RedisServer, start_worker
) -> None:
    env = server_env(redis_server)
    first = start_api(workdir, env)
    redis_server.stop()
    run_id = first.queue("Quick", {"n": 1})
    first.service.proc.kill()  # the request was answered; the message was never sent
    first.service.proc.wait()
    redis_server.start()
    queue = Queue("omnilab", connection=redis_server.client())
    assert queue.count == 0
    second = start_api(workdir, env)
    try:
        assert wait_until(lambda: queue.count == 1, timeout=15), "not sent again at start"
        start_worker()
        assert second.wait_status(run_id, "succeeded")["queue"]["attempt"] == 1
    finally:
        second.service.stop()


def test_a_message_taken_by_a_dead_hosts_connection_is_sent_again(
    api: Api, start_worker, redis_server: RedisServer
) -> None:
    """A worker host killed outright leaves its idle slots' blocked reads open on Redis's
    side until TCP gives up (minutes); Redis hands the next message to the oldest of them
    and it is never run. The sweep sees the message gone from the queue with the run not
    started, and sends it again."""
    # The dead slot: a connection blocked on the run queues before the live slot, as a
    # slot blocks (BLPOP on its host's queue and the shared one), that never reads.
    ghost = redis.Redis.from_url(redis_server.url).connection_pool.make_connection()
    ghost.connect()
    ghost.send_command("BLPOP", f"rq:queue:omnilab@{host_name()}", "rq:queue:omnilab", 0)
    try:
        start_worker()
        run_id = api.queue("Quick", {"n": 1, "pause": 0.1})
        api.wait_status(run_id, "succeeded", timeout=60)
        # The dead slot did take the first message.
        taken = ghost.read_response()
        assert taken is not None and taken[1].decode() == run_id, taken
    finally:
        ghost.disconnect()


def test_several_workers_share_one_queue_and_run_each_run_once(api: Api, start_worker) -> None:
    first = start_worker("--concurrency", "2")
    second = start_worker("--concurrency", "2")
    ids = [api.queue("Quick", {"n": 1, "pause": 0.5}) for _ in range(10)]
    runs = [api.wait_status(run_id, "succeeded", timeout=90) for run_id in ids]
    assert all(r["queue"]["attempt"] == 1 for r in runs)
    used = {r["queue"]["worker"].rsplit("/", 1)[0] for r in runs}
    names = {first.worker_id, second.worker_id}
    assert used == names, "both workers should have taken runs"
    with api.client("read") as client:
        workers = client.get("/v1/workers").json()["workers"]
    assert {w["id"] for w in workers} >= names
    assert all(w["concurrency"] == 2 for w in workers)


def test_gpus_are_handed_to_runs_without_overlap(api: Api, start_worker) -> None:
    start_worker("--concurrency", "3", "--gpus", "0,1")
    echo = [api.queue("GpuEcho", {"hold": 1.5}) for _ in range(6)]
    only = api.queue("GpuOnly")
    runs = [api.wait_status(r, "succeeded", timeout=90) for r in echo]
    seen = [r["summary"]["cuda_visible_devices"] for r in runs]
    assert set(seen) <= {"0", "1", ""} and {"0", "1"} <= set(seen)
    for a in runs:
        for b in runs:
            overlap = a["summary"]["began"] < b["summary"]["ended"] and (
                b["summary"]["began"] < a["summary"]["ended"]
            )
            if a is not b and overlap and a["summary"]["cuda_visible_devices"]:
                assert a["summary"]["cuda_visible_devices"] != b["summary"]["cuda_visible_devices"]
    # gpu=True goes to the GPU queue of a host with GPUs, where only a GPU slot takes
    # it; this host has no GPU driver, so the run then fails with that reason (it
    # succeeds where one is present).
    gpu_run = api.wait_status(only, ("succeeded", "failed"), timeout=60)
    assert gpu_run["queue"]["queue"].startswith("omnilab-gpu@")
    assert gpu_run["queue"]["gpu"] in ("0", "1")
    if gpu_run["status"] == "failed":
        assert "no usable GPU" in gpu_run["error"]


def test_secrets_never_reach_the_servers_output(
    api: Api, redis_server: RedisServer, start_worker, tracking_db: str
) -> None:
    worker = start_worker()
    api.wait_status(api.queue("Quick"), "succeeded")
    with api.client("read") as client:
        client.get("/v1/runs")
    password = tracking_db.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    keys = list(api.keys.values())
    for output in (api.service.output, worker.output):
        assert redis_server.password not in output
        assert password not in output
        # A key reads olk_<id>_<secret>; the secret, base64url, may itself hold "_".
        assert not [k for k in keys if k.split("_", 2)[2] in output]
    # Health needs no key and tells nothing secret.
    health = httpx.get(f"{api.url}/healthz").json()
    assert health["status"] == "ok" and health["workers"] == 1
    assert redis_server.password not in str(health)
