"""Resource bounds on the real engine: every container of a stack gets memory, process
and data limits (defaults when the experiment says nothing), and a run that outgrows one
fails naming the bound and the service, its stack removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnilab import Postgres, Redis, Resources, Stack, StackStartError, UsageError
from omnilab.progress import QuietReporter
from tests.support import EXPERIMENTS, run_cli
from tests.support.docker_support import docker_client

pytestmark = pytest.mark.usefixtures("docker_scope")

BOUNDED = EXPERIMENTS / "bounded.py"
GIB = 1 << 30
MIB = 1 << 20


def _host_config(name: str, stack: Stack) -> dict:
    return docker_client().containers.get(f"{name}-exp-{stack.id[:8]}").attrs["HostConfig"]


def _tmpfs_size(host_config: dict) -> int:
    (mount,) = [m for m in host_config["Mounts"] if m["Type"] == "tmpfs"]
    return mount["TmpfsOptions"]["SizeBytes"]


def _stack_objects(run_id: str) -> list[str]:
    client = docker_client()
    selector = {"label": [f"io.omnilab.stack={run_id}"]}
    found = [c.name for c in client.containers.list(all=True, filters=selector)]
    return found + [n.name for n in client.networks.list(filters=selector)]


def test_defaults_and_declared_bounds_reach_each_containers_host_config() -> None:
    # Defaults: 2 GiB of memory and a 1 GiB data tmpfs, each at most a quarter of the
    # engine host's memory; 1024 processes; CPUs unbounded.
    quarter = docker_client().info()["MemTotal"] // 4
    memory, disk = min(2 * GIB, quarter), min(GIB, quarter)
    declared = Resources(cpus=0.5, per_service={"postgres": Resources(pids=256, disk="128m")})
    with (
        Stack(Redis(), runtime="docker", reporter=QuietReporter()) as plain,
        Stack(
            Redis(), Postgres(), runtime="docker", reporter=QuietReporter(), resources=declared
        ) as s,
    ):
        config = _host_config("redis", plain)
        assert (config["Memory"], config["MemorySwap"]) == (memory, memory)  # no swap on top
        assert config["PidsLimit"] == 1024 and config["NanoCpus"] == 0
        assert _tmpfs_size(config) == disk

        redis, postgres = _host_config("redis", s), _host_config("postgres", s)
        assert redis["NanoCpus"] == postgres["NanoCpus"] == 500_000_000
        assert (redis["PidsLimit"], _tmpfs_size(redis)) == (1024, disk)
        assert (postgres["PidsLimit"], _tmpfs_size(postgres)) == (256, 128 * MIB)
        assert postgres["Memory"] == memory
        # The run record (the stack's description) shows what applied.
        recorded = s.describe()["services"]["postgres"]["bounds"]
        assert {k: recorded[k] for k in ("cpus", "pids", "disk")} == {
            "cpus": 0.5,
            "pids": 256,
            "disk": "128 MiB",
        }
        assert "memory includes the data on its tmpfs" in recorded["notes"][0]


def test_a_bound_that_cannot_be_given_is_refused_before_anything_starts() -> None:
    cpus = docker_client().info()["NCPU"] + 1
    with pytest.raises(UsageError, match=f"cpus={cpus} for redis, but the Docker engine has"):
        Stack(Redis(), runtime="docker", resources=Resources(cpus=cpus)).start()


def test_a_service_that_cannot_start_within_its_disk_says_so() -> None:
    small = Resources(per_service={"postgres": Resources(disk="8m")})
    with pytest.raises(StackStartError, match=r"out of space: its disk bound is 8 MiB"):
        Stack(Postgres(), runtime="docker", reporter=QuietReporter(), resources=small).start()


def test_postgres_filling_its_disk_fails_the_run_naming_the_bound(workdir: Path) -> None:
    result = run_cli("run", f"{BOUNDED}:FillPostgres", "--runtime", "docker", "--json")
    assert result.returncode == 1, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "failed"
    assert (
        run["error"]
        .splitlines()[-1]
        .startswith("postgres hit its disk bound (96 MiB): its data tmpfs is full")
    )
    assert "DiskFull" in run["error"]  # the experiment's own traceback stays
    assert run["stack"]["services"]["postgres"]["bounds"]["disk"] == "96 MiB"
    assert not _stack_objects(run["id"])


def test_redis_killed_at_its_memory_bound_fails_the_run_naming_it(workdir: Path) -> None:
    """The experiment swallows the lost connection and returns: the run fails anyway."""
    result = run_cli("run", f"{BOUNDED}:FillRedis", "--runtime", "docker")
    assert result.returncode == 1, result.stderr
    assert (
        "error: redis hit its memory bound (64 MiB): the engine killed it (OOMKilled)"
        in result.stdout
    )
    assert not list((workdir / "state").glob("stacks/*.json"))


def test_postgres_at_its_processes_bound_fails_the_run_naming_it(workdir: Path) -> None:
    """Each connection is a process of the server: past its bound the kernel refuses the
    fork, the experiment swallows the refusals, and the run fails naming the bound."""
    result = run_cli("run", f"{BOUNDED}:ForkPostgres", "--runtime", "docker", "--json")
    assert result.returncode == 1, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "failed"
    last = run["error"].splitlines()[-1]
    assert last.startswith("postgres hit its processes bound (24): the kernel refused it"), last
    assert "Resources(pids=...)" in last
    assert not _stack_objects(run["id"])
