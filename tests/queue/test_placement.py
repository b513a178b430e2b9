"""Placement across worker hosts: real API, Redis, PostgreSQL and worker processes.

Each "host" is an ``omnilab worker`` with its own ``OMNILAB_HOST``, its own working
directory and its own copy of the experiments folder, so nothing here leans on a shared
filesystem or on seeing another host's processes: the workers meet only through Redis and
the tracking store, as on separate machines.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from omnilab.catalog import Catalog, CatalogEntry
from omnilab.queue import horse
from omnilab.queue.placement import Placement, Placer, can_take, choose
from omnilab.queue.settings import QueueSettings
from omnilab.queue.slot import Slot
from omnilab.requirements import GpuOffer, Offer, Requirements
from omnilab.tracking.queued_runs import QueueStore
from omnilab.tracking.records import RunRecord
from omnilab.tracking.store import TrackingStore
from omnilab.tracking.workers import Capacity, WorkerRecord
from tests.support import PLACEMENT_EXPERIMENTS, run_cli, wait_until
from tests.support.queue_helpers import (
    Api,
    RedisServer,
    Service,
    make_key,
    server_env,
    spawn_worker,
    start_api,
)
from tests.support.web import Browser

StartHost = Callable[..., Service]


def _worker(
    name: str, host: str, *, concurrency: int = 1, gpus: int = 0, **offer: object
) -> WorkerRecord:
    now = datetime.now(UTC)
    ids = [str(i) for i in range(gpus)]
    return WorkerRecord(
        id=name,
        host=host,
        pid=1,
        concurrency=concurrency,
        gpus=ids,
        queues=[],
        started_at=now,
        heartbeat_at=now,
        runtimes=["local"],
        gpu_details=[GpuOffer(id=i, model="NVIDIA H100 80GB HBM3", memory_mib=81559) for i in ids],
        **offer,
    )


def test_placement_picks_the_least_busy_host_that_offers_everything() -> None:
    zoned = Requirements(labels={"zone": "a"})
    workers = [
        _worker("a1", "a", concurrency=2, labels={"zone": "a"}),
        _worker("b1", "b", concurrency=2, labels={"zone": "a"}),
        _worker("c1", "c", concurrency=8, labels={"zone": "c"}),
    ]
    capacity = Capacity(workers=workers, running={"a1": 1}, placed={})
    assert choose(zoned, capacity, "omnilab") == Placement(queue="omnilab@b", host="b")
    capacity.placed["b"] = 2
    assert choose(zoned, capacity, "omnilab").host == "a"
    # A GPU run goes to the host's GPU queue, where only its GPU slots listen.
    gpu = Requirements(gpu=1)
    with_gpu = Capacity(workers=[*workers, _worker("g1", "g", concurrency=2, gpus=1)])
    assert choose(gpu, with_gpu, "q") == Placement(queue="q-gpu@g", host="g")
    # Two workers on one host share its queues: both must offer what the run requires.
    shared = Capacity(workers=[_worker("x1", "x", labels={"zone": "a"}), _worker("x2", "x")])
    placement = choose(zoned, shared, "omnilab")
    assert placement.host is None and placement.queue == "omnilab"
    assert placement.waiting == (
        "waiting for capacity: the workers that offer all of it share host x with workers "
        "that do not, and a host's workers share its queue (2 workers alive on 1 host: x)"
    )
    assert can_take(zoned, "a", capacity) and not can_take(zoned, "x", shared)


def test_a_run_no_host_can_take_waits_with_the_reason() -> None:
    two = Capacity(workers=[_worker("a1", "a"), _worker("b1", "b", labels={"zone": "b"})])
    reasons = {
        "no live worker has a GPU (2 workers alive: a, b)": Requirements(gpu=1),
        "no live worker is on host c (2 workers alive: a, b)": Requirements(host="c"),
        "no live worker has label zone=a (2 workers alive: a, b)": Requirements(
            labels={"zone": "a"}
        ),
        "no live worker has the docker runtime, a GPU (2 workers alive: a, b)": Requirements(
            gpu=1, runtime="docker"
        ),
        "no live worker has all of: host a, label zone=b (2 workers alive: a, b)": Requirements(
            host="a", labels={"zone": "b"}
        ),
    }
    for why, required in reasons.items():
        assert choose(required, two, "omnilab").waiting == f"waiting for capacity: {why}"
    gpus = Capacity(workers=[_worker("g1", "g", gpus=2)])
    assert choose(Requirements(gpu_memory_gb=100), gpus, "q").waiting == (
        "waiting for capacity: no live worker has a GPU with 100 GB (1 worker alive: g)"
    )
    assert choose(Requirements(gpu=1), Capacity(workers=[]), "q") == Placement(
        queue="q-gpu",
        waiting="waiting for capacity: no worker is alive (start one with `omnilab worker`)",
    )


def test_the_apis_placer_reads_the_workers_once_a_second_and_spreads_a_burst() -> None:
    reads = []

    def load() -> Capacity:
        reads.append(1)
        return Capacity(workers=[_worker("a1", "a", concurrency=2), _worker("b1", "b")])

    placer = Placer("omnilab", load)
    hosts = [placer.place(Requirements(host=None, runtime="local")).host for _ in range(6)]
    assert len(reads) == 1
    # Per slot: a has two, b one; each placed run counts on its host at once.
    assert sorted(hosts) == ["a", "a", "a", "a", "b", "b"]
    placer._loaded_at -= 2
    placer.place(Requirements(runtime="local"))
    assert len(reads) == 2


def test_a_slot_that_cannot_give_what_a_run_requires_gives_it_back(
    tracking_db: str, workdir: Path
) -> None:
    """A worker that joined the host after the run was placed there took it: the run goes
    back, its attempt not counted, and waits to be placed again, saying why."""
    with TrackingStore(tracking_db) as store:
        queue = QueueStore(store)
        record = RunRecord(
            id=uuid.uuid4().hex,
            experiment="ZoneA",
            status="queued",
            requires={"labels": {"zone": "a"}},
            code_sha256="0" * 64,
        )
        queue.submit(record, queue="omnilab@h", max_attempts=1, host="h")
        claim = queue.claim(
            record.id, worker="w/0", gpu=None, run_dir="/x", environment={"hostname": "h"}
        )
        assert claim is not None and claim.requires == {"labels": {"zone": "a"}}
        assert claim.code_sha256 == "0" * 64
        slot = Slot("w", 0, None, QueueSettings(), Catalog(workdir), offer=Offer(host="h"))
        assert horse._give_back(store, slot, claim)
        back = store.get_run(record.id)
        assert back.status == "queued" and back.environment == {}
        assert back.waiting == (
            "waiting for capacity: placing it again: worker w/0 on h took it but does not "
            "offer label zone=a"
        )
        info = queue.queue_info([record.id])[record.id]
        assert info.attempt == 0 and info.host is None and info.worker is None
        assert [p.run_id for p in queue.to_place()] == [record.id]
        # A slot that offers it keeps it.
        again = queue.claim(record.id, worker="v/0", gpu=None, run_dir="/x", environment={})
        assert again is not None and store.get_run(record.id).waiting is None
        labelled = Offer(host="h", labels={"zone": "a"})
        keeper = Slot("v", 0, None, QueueSettings(), Catalog(workdir), offer=labelled)
        assert not horse._give_back(store, keeper, again)


def test_a_file_changed_a_moment_ago_is_read_again_before_a_refusal(workdir: Path) -> None:
    folder = _copy(workdir / "experiments")
    catalog = Catalog(folder, recheck_s=3600)  # would not look at the files again itself
    stale = catalog.get("Anywhere")
    path = folder / "anywhere.py"
    path.write_bytes(path.read_bytes() + b"\n# deployed a moment ago\n")
    new = hashlib.sha256(path.read_bytes()).hexdigest()

    def reread() -> CatalogEntry:
        catalog.refresh(force=True)
        return catalog.get("Anywhere")

    assert horse.check_code(stale, new, reread).sha256 == new
    assert horse.check_code(stale, None) is stale  # queued before hashes were recorded
    with pytest.raises(horse.CodeMismatch, match=r"^code mismatch on host .*: experiment Anywhere"):
        horse.check_code(reread(), stale.sha256, reread)


def _copy(folder: Path) -> Path:
    """A host's own copy of the experiments folder."""
    shutil.copytree(PLACEMENT_EXPERIMENTS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture
def placement_api(workdir: Path, tracking_db: str, redis_server: RedisServer) -> Iterator[Api]:
    env = server_env(redis_server, _copy(workdir / "api" / "experiments"))
    server = start_api(workdir, {**env, "OMNILAB_HOST": "api-host"})
    yield server
    server.service.stop()


@pytest.fixture
def start_host(workdir: Path, tracking_db: str, redis_server: RedisServer) -> Iterator[StartHost]:
    """``start_host(NAME, ARGS..., env=..., experiments=...)``: a worker on "host" NAME,
    in a folder of its own with its own copy of the experiments (or ``experiments``)."""
    started: list[Service] = []

    def start(
        name: str, *args: str, env: dict[str, str] | None = None, experiments: Path | None = None
    ) -> Service:
        home = workdir / "hosts" / name
        if experiments is None:
            experiments = home / "experiments"
            if not experiments.exists():
                _copy(experiments)
        home.mkdir(parents=True, exist_ok=True)
        host_env = {**server_env(redis_server, experiments), "OMNILAB_HOST": name, **(env or {})}
        service = spawn_worker(home, host_env, *args)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def _workers(api: Api) -> dict[str, dict]:
    with api.client("read") as client:
        response = client.get("/v1/workers")
    assert response.status_code == 200, response.text
    return {w["host"]: w for w in response.json()["workers"]}


def _no_message(redis_server: RedisServer, run_id: str) -> bool:
    client = redis_server.client()
    try:
        return not client.keys(f"rq:job:{run_id}*")
    finally:
        client.close()


def test_a_run_requiring_a_label_runs_only_on_the_host_that_has_it(
    placement_api: Api, start_host: StartHost
) -> None:
    api = placement_api
    start_host("host-a", "--concurrency", "2", "--label", "zone=a")
    start_host("host-b", "--concurrency", "2", env={"OMNILAB_WORKER_LABELS": "zone=b,disk=ssd"})
    zoned = [api.queue("ZoneA", {"pause": 0.2}) for _ in range(4)]
    anywhere = [api.queue("Anywhere", {"pause": 0.2}) for _ in range(4)]
    for run_id in zoned:
        run = api.wait_status(run_id, "succeeded", timeout=90)
        assert run["host"] == "host-a" and run["summary"]["host"] == "host-a"
        assert run["queue"]["queue"] == "omnilab@host-a" and run["queue"]["host"] == "host-a"
        assert run["requires"] == {"labels": {"zone": "a"}}
        assert run["waiting"] is None
    for run_id in anywhere:
        run = api.wait_status(run_id, "succeeded", timeout=90)
        assert run["queue"]["queue"] == "omnilab" and run["queue"]["host"] is None
        assert run["requires"] is None and run["host"] in ("host-a", "host-b")

    # The API, the CLI and the web page show both hosts and what each offers.
    workers = _workers(api)
    assert set(workers) == {"host-a", "host-b"}
    a, b = workers["host-a"], workers["host-b"]
    assert a["alive"] and a["status"] == "alive" and b["alive"]
    assert a["labels"] == {"zone": "a"} and b["labels"] == {"zone": "b", "disk": "ssd"}
    assert "local" in a["runtimes"] and "local" in b["runtimes"]
    assert {"omnilab", "omnilab@host-a"} <= set(a["queues"])
    assert "omnilab@host-a" not in b["queues"] and a["gpu_details"] == []
    listed = run_cli("workers", "--json")
    assert listed.returncode == 0, listed.stderr
    by_host = {w["host"]: w for w in json.loads(listed.stdout)}
    assert by_host["host-a"]["labels"] == {"zone": "a"} and by_host["host-b"]["alive"] is True
    text = run_cli("workers")
    assert text.returncode == 0, text.stderr
    assert "2 workers alive on 2 hosts" in text.stdout
    for line in ("host-a  alive", "host-b  alive", "zone=a", "disk=ssd, zone=b", "omnilab@host-b"):
        assert line in text.stdout, text.stdout
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read")).status_code == 303
        page = browser.get("/workers").text
        assert 'data-host="host-a" data-status="alive"' in page
        assert "<code>zone=a</code>" in page and "<code>disk=ssd</code>" in page


def test_a_gpu_run_waits_for_capacity_with_the_reason_until_a_gpu_worker_appears(
    placement_api: Api, start_host: StartHost, redis_server: RedisServer
) -> None:
    api = placement_api
    start_host("host-a", "--gpus", "none")
    start_host("host-b", "--gpus", "none")
    run_id = api.queue("NeedsGpu")
    reason = "waiting for capacity: no live worker has a GPU (2 workers alive: host-a, host-b)"

    def said() -> bool:
        return api.run(run_id)["waiting"] == reason

    # The API may place it from a view of the workers up to a second old; the
    # reconciler says why within a sweep either way.
    assert wait_until(said, timeout=15), api.run(run_id)
    # Many sweeps later (every 0.5 s here) it is still queued, untaken and unsent.
    assert not wait_until(lambda: api.run(run_id)["status"] != "queued", timeout=4)
    run = api.run(run_id)
    assert run["waiting"] == reason and run["queue"]["attempt"] == 0
    assert run["queue"]["host"] is None and run["requires"] == {"gpu": 1}
    assert _no_message(redis_server, run_id)
    shown = run_cli("runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert reason in shown.stdout and "requires" in shown.stdout
    as_json = json.loads(run_cli("runs", "show", run_id, "--json").stdout)
    assert as_json["waiting"] == reason and as_json["status"] == "queued"
    with Browser(api.url) as browser:
        assert browser.sign_in(make_key("read")).status_code == 303
        assert reason in browser.get(f"/runs/{run_id}").text
        assert reason in browser.get("/").text  # the runs table

    # A waiting run can be cancelled like any queued one; it no longer says it waits.
    dropped = api.queue("NeedsGpu")
    with api.client("run") as client:
        assert client.post(f"/v1/runs/{dropped}/cancel").json()["status"] == "cancelled"
    assert api.run(dropped)["waiting"] is None

    # A worker with a GPU appears: the reconciler places the run on its host's GPU queue.
    start_host("host-gpu", "--gpus", "0")
    run = api.wait_status(run_id, "succeeded", timeout=60)
    assert run["host"] == "host-gpu" and run["waiting"] is None
    assert api.run(dropped)["status"] == "cancelled"
    assert run["queue"]["queue"] == "omnilab-gpu@host-gpu"
    assert run["summary"]["cuda_visible_devices"] == "0"
    gpu = _workers(api)["host-gpu"]
    assert gpu["gpus"] == ["0"] and gpu["gpu_details"][0]["id"] == "0"
    assert "omnilab-gpu@host-gpu" in gpu["queues"]


def test_a_run_placed_on_a_host_whose_worker_died_is_placed_again(
    workdir: Path, tracking_db: str, redis_server: RedisServer, start_host: StartHost
) -> None:
    # A short heartbeat TTL, so that the silent host is found dead within seconds.
    ttl = {"OMNILAB_WORKER_TTL": "3"}
    env = {**server_env(redis_server, _copy(workdir / "api" / "experiments")), **ttl}
    api = start_api(workdir, env)
    try:
        first = start_host("host-a", "--label", "zone=a", env=ttl)
        busy = api.queue("Anywhere", {"pause": 300})
        api.wait_status(busy, "running", timeout=60)
        # host-a is busy with its one slot: the zoned run waits in host-a's queue.
        run_id = api.queue("ZoneA")
        assert wait_until(lambda: api.run(run_id)["queue"]["host"] == "host-a", timeout=15)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        # Dead past the TTL: the run waits for capacity again, and no worker is left.
        gone = "waiting for capacity: no worker is alive (start one with `omnilab worker`)"
        assert wait_until(lambda: api.run(run_id)["waiting"] == gone, timeout=30), api.run(run_id)
        assert api.run(run_id)["queue"]["host"] is None
        # Another host with the label takes it over.
        start_host("host-b", "--label", "zone=a", env=ttl)
        run = api.wait_status(run_id, "succeeded", timeout=60)
        assert run["host"] == "host-b" and run["queue"]["queue"] == "omnilab@host-b"
        assert run["queue"]["attempt"] == 1
        assert api.wait_status(busy, "failed", timeout=30)["error"]
        lost = {w["host"]: w for w in json.loads(run_cli("workers", "--json", env=ttl).stdout)}
        assert lost["host-a"]["alive"] is False and lost["host-a"]["status"] == "stopped"
        assert lost["host-b"]["alive"] is True
    finally:
        api.service.stop()


def test_a_worker_whose_experiment_file_differs_refuses_the_run(
    placement_api: Api, start_host: StartHost, workdir: Path
) -> None:
    api = placement_api
    served = (workdir / "api" / "experiments" / "anywhere.py").read_bytes()
    theirs = hashlib.sha256(served).hexdigest()
    experiments = _copy(workdir / "hosts" / "host-c" / "experiments")
    changed = experiments / "anywhere.py"
    changed.write_bytes(served + b"\n# changed on host-c only\n")
    mine = hashlib.sha256(changed.read_bytes()).hexdigest()
    start_host("host-c", "--label", "zone=a", experiments=experiments)
    run_id = api.queue("Anywhere")
    run = api.wait_status(run_id, "failed", timeout=60)
    assert run["code_sha256"] == theirs and run["host"] == "host-c"
    assert run["error"] == (
        f"code mismatch on host host-c: experiment Anywhere is anywhere.py with sha256 "
        f"{mine[:12]} here, but the run was queued against {theirs[:12]}; give every host "
        "the same experiments folder (OMNILAB_EXPERIMENTS_DIR) and queue the run again"
    )
    shown = run_cli("runs", "show", run_id)
    assert f"{theirs[:12]} (sha256 of anywhere.py)" in shown.stdout, shown.stdout
    assert "code mismatch on host host-c" in shown.stdout
    # The same worker runs what it has the same file for; the run records that code.
    zoned = (workdir / "api" / "experiments" / "zoned.py").read_bytes()
    same = api.wait_status(api.queue("ZoneA"), "succeeded", timeout=60)
    assert same["code_sha256"] == hashlib.sha256(zoned).hexdigest() and same["host"] == "host-c"


def test_bad_requires_and_bad_labels_are_one_line_usage_errors(
    placement_api: Api, workdir: Path
) -> None:
    # At definition: `omnilab run` of the file names the key and what is known.
    bad = run_cli("run", PLACEMENT_EXPERIMENTS / "misplaced.py")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "Misplaced.requires: unknown key 'gpus' (known: gpu, gpu_memory_gb, gpu_model, " in (
        bad.stderr
    )
    # At queue time: the API leaves the file out, says why, and a request names it too.
    with placement_api.client("read", "run") as client:
        listed = client.get("/v1/experiments").json()
        assert "Misplaced" not in {e["name"] for e in listed["experiments"]}
        assert any("Misplaced.requires: unknown key 'gpus'" in p for p in listed["problems"])
        zoned = next(e for e in listed["experiments"] if e["name"] == "ZoneA")
        assert zoned["requires"] == {"labels": {"zone": "a"}} and len(zoned["sha256"]) == 64
        refused = client.post("/v1/runs", json={"experiment": "Misplaced"})
        assert refused.status_code == 404
        assert "Misplaced.requires: unknown key 'gpus'" in refused.json()["detail"]
    # Labels: on the command line and in the setting.
    for args, env, named in (
        (["--label", "zone"], {}, "--label 'zone'"),
        (["--label", "zone=a b"], {}, "--label 'zone=a b'"),
        ([], {"OMNILAB_WORKER_LABELS": "zone=a,oops"}, "OMNILAB_WORKER_LABELS: label 'oops'"),
    ):
        result = run_cli("worker", *args, env=env)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "write key=value" in lines[0], lines
