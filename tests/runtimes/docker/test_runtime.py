"""The docker runtime against the real engine: one labelled container per service on a
network of the stack's own, ports on 127.0.0.1, fresh credentials, nothing left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import redis

from omnilab import Postgres, Qdrant, Redis, Stack, UsageError
from omnilab.progress import Reporter
from omnilab.runtimes import ports as port_alloc
from omnilab.runtimes.docker.runtime import network_env
from tests.support import EXPERIMENTS, HELLO, OMNILAB, run_cli, wait_until
from tests.support.docker_support import (
    OLLAMA_STANDIN_IMAGE,
    POSTGRES_IMAGE,
    QDRANT_IMAGE,
    REDIS_IMAGE,
    TEST_LABEL,
    docker_client,
)

pytestmark = pytest.mark.usefixtures("docker_scope")


class Lines(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def _stack_objects(stack_id: str) -> list[str]:
    client = docker_client()
    selector = {"label": [f"io.omnilab.stack={stack_id}"]}
    containers = client.containers.list(all=True, filters=selector, sparse=True)
    return [c.attrs["Names"][0] for c in containers] + [
        n.name for n in client.networks.list(filters=selector)
    ]


def test_each_service_runs_in_a_labelled_container_on_the_stack_network(
    docker_scope: str,
) -> None:
    client = docker_client()
    lines = Lines()
    with Stack(Redis(), Postgres(), Qdrant(), runtime="docker", reporter=lines) as s:
        assert s.redis.set("k", "v") and s.redis.get("k") == "v"
        assert s.postgres.execute("select current_database()").fetchone() == ("omnimind_exp",)
        assert s.qdrant.get_collections().collections == []
        network = f"omnilab-{s.id[:12]}"
        for name, image, pinned in (
            ("redis", REDIS_IMAGE, "redis:7.4.2"),
            ("postgres", POSTGRES_IMAGE, "postgres:17.4"),
            ("qdrant", QDRANT_IMAGE, "qdrant/qdrant:v1.19.0"),
        ):
            container = client.containers.get(f"{name}-exp-{s.id[:8]}")
            labels = container.labels
            assert labels["io.omnilab.stack"] == s.id
            assert labels["io.omnilab.service"] == name
            assert labels["io.omnilab.owner.pid"] == str(os.getpid())
            assert labels[TEST_LABEL] == docker_scope
            host_config = container.attrs["HostConfig"]
            # Published on loopback only, on the ports the endpoint says.
            endpoint = s.endpoint(name)
            for role, native in s.services[name].service.native_ports.items():
                assert host_config["PortBindings"][f"{native}/tcp"] == [
                    {"HostIp": "127.0.0.1", "HostPort": str(endpoint.ports[role])}
                ]
            assert not host_config["Privileged"]
            assert "no-new-privileges" in host_config["SecurityOpt"]
            assert (
                f"{name}-exp" in container.attrs["NetworkSettings"]["Networks"][network]["Aliases"]
            )
            described = s.services[name].describe()
            assert described["image"] == image and described["kind"] == "container"
            assert described["image_digest"] == client.images.get(image).id
            # omnilab's own build stands in for the pinned official image: recorded, said.
            assert described["replaces"] == pinned
            version = s.services[name].version
            said = f"  {name}: {version} from {image} (built locally) in place of the pinned"
            assert any(line.startswith(said) for line in lines.lines), lines.lines
        assert s.services["redis"].version.startswith("redis 7.0")
        assert s.services["postgres"].version.startswith("postgres 15")
        assert s.services["qdrant"].version == "qdrant 1.19.0"
        # Qdrant's API key through its documented variable, fresh, and required.
        key = s.endpoint("qdrant").credentials.password
        env = client.containers.get(f"qdrant-exp-{s.id[:8]}").attrs["Config"]["Env"]
        assert f"QDRANT__SERVICE__API_KEY={key}" in env
        qdrant_http = f"http://127.0.0.1:{s.endpoint('qdrant').ports['http']}"
        assert httpx.get(f"{qdrant_http}/collections").status_code == 401
        assert s.env["QDRANT_URL"] == qdrant_http and s.env["QDRANT_API_KEY"] == key
        assert s.endpoint("redis").port not in (6379, 5432)
        assert "****" in json.dumps(s.describe())
        stack_id = s.id
    assert "runtime: docker" in lines.lines
    assert not _stack_objects(stack_id)


def test_data_lives_on_tmpfs_or_in_a_labelled_volume_that_goes_with_the_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = docker_client()
    with Stack(Redis(), Qdrant(), runtime="docker", reporter=Lines()) as s:
        for name, data in (("redis", "/data"), ("qdrant", "/qdrant/storage")):
            mounts = client.containers.get(f"{name}-exp-{s.id[:8]}").attrs["Mounts"]
            assert [(m["Type"], m["Destination"]) for m in mounts] == [("tmpfs", data)]
    monkeypatch.setenv("OMNILAB_DOCKER_DATA", "volume")
    with Stack(Redis(), runtime="docker", reporter=Lines()) as s:
        (volume,) = client.volumes.list(filters={"label": f"io.omnilab.stack={s.id}"})
        assert volume.name == f"redis-exp-{s.id[:8]}-data"
        assert volume.attrs["Labels"]["io.omnilab.service"] == "redis"
        stack_id = s.id
    assert not client.volumes.list(filters={"label": f"io.omnilab.stack={stack_id}"})
    monkeypatch.setenv("OMNILAB_DOCKER_DATA", "ramdisk")
    with pytest.raises(UsageError, match="OMNILAB_DOCKER_DATA"):
        Stack(Redis(), runtime="docker", reporter=Lines()).start()


#: Every process's command line, sampled as fast as Python reads /proc, until SIGTERM;
#: then the distinct ones, NUL-separated arguments, one per line, in the file argv[1].
_SAMPLER = """
import os, signal, sys
seen, stop, own = set(), [], str(os.getpid())
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while not stop:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and entry.name != own:
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    seen.add(fh.read())
            except OSError:
                pass
with open(sys.argv[1], "wb") as out:
    out.write(b"\\n".join(seen))
"""


def test_credentials_are_fresh_required_and_kept_out_of_process_listings(
    tmp_path: Path,
) -> None:
    client = docker_client()
    # What `ps` shows any user while the containers start (an entrypoint, setpriv,
    # the server before it renames itself...), sampled from outside, as `ps` would.
    sampled = tmp_path / "cmdlines"
    sampler = subprocess.Popen([sys.executable, "-c", _SAMPLER, str(sampled)])
    time.sleep(0.5)  # its first sweep before the first container
    with (
        Stack(Redis(), Postgres(), runtime="docker", reporter=Lines()) as a,
        Stack(Redis(), Postgres(), runtime="docker", reporter=Lines()) as b,
    ):
        sampler.terminate()
        assert sampler.wait(timeout=30) == 0
        cmdlines = sampled.read_bytes()
        assert b"redis-server" in cmdlines and b"postgres" in cmdlines  # it saw them start
        for stack in (a, b):
            for name in ("redis", "postgres"):
                secret = stack.endpoint(name).credentials.password.encode()
                assert secret not in cmdlines, f"{name}'s password was on a command line"
        for name in ("redis", "postgres"):
            assert a.endpoint(name).credentials.password != b.endpoint(name).credentials.password
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=a.endpoint("redis").port).ping()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                host="127.0.0.1",
                port=a.endpoint("postgres").port,
                user="omnimind",
                password="wrong",
                dbname="omnimind_exp",
            )
        # Nor what it shows of the running servers: Redis reads its password from a file,
        # and the entrypoints drop the variables before starting the servers.
        for name in ("redis", "postgres"):
            secret = a.endpoint(name).credentials.password.encode()
            # No init process: the container's main process is the server itself.
            pid = client.containers.get(f"{name}-exp-{a.id[:8]}").attrs["State"]["Pid"]
            assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes()
            # Nor in the server's environment, which its user on the host could read.
            assert secret not in Path(f"/proc/{pid}/environ").read_bytes()


def test_three_runs_started_at_once_get_three_disjoint_stacks(workdir: Path) -> None:
    procs = [
        subprocess.Popen(
            [str(OMNILAB), "run", str(EXPERIMENTS / "pair.py"), "--runtime", "docker", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        runs.append(json.loads(out))
    ids = {r["id"] for r in runs}
    assert len(ids) == 3
    used_ports = [p for r in runs for p in r["summary"]["ports"].values()]
    assert len(set(used_ports)) == 6, used_ports
    for r in runs:
        summary = r["summary"]
        # Each found an empty Redis and database: nobody else's data, and its own.
        assert summary["keys_before"] == 0 and summary["tables_before"] == 0
        assert summary["redis_owner"] == summary["postgres_owner"] == r["id"]
        assert r["runtime"] == "docker"
        for name in ("redis", "postgres"):
            service = r["stack"]["services"][name]
            assert service["image_digest"].startswith("sha256:")
        assert not _stack_objects(r["id"])


def test_clients_inside_the_stack_network_use_the_seed_host_names() -> None:
    client = docker_client()
    with Stack(Redis(), Postgres(), runtime="docker", reporter=Lines()) as s:
        env = network_env(s.services)
        assert env["ENVIRONMENT"] == "docker_experiments"
        assert "@redis-exp:6379/" in env["REDIS_URL"]
        assert "@postgres-exp:5432/" in env["POSTGRES_URL"]
        scope = {TEST_LABEL: os.environ["OMNILAB_LABELS"].split("=", 1)[1]}
        common = {"network": f"omnilab-{s.id[:12]}", "remove": True, "labels": scope}
        url = urlsplit(env["REDIS_URL"])
        pong = client.containers.run(
            REDIS_IMAGE,
            ["sh", "-c", 'redis-cli --no-auth-warning -h "$HOST" -p "$PORT" -a "$PW" ping'],
            environment={"HOST": url.hostname, "PORT": str(url.port), "PW": url.password},
            **common,
        )
        assert pong.strip() == b"PONG"
        one = client.containers.run(
            POSTGRES_IMAGE,
            ["sh", "-c", 'psql "$POSTGRES_URL" -tAc "select 1"'],
            environment={"POSTGRES_URL": env["POSTGRES_URL"]},
            entrypoint=[],
            **common,
        )
        assert one.strip() == b"1"


def test_a_busy_preferred_port_moves_the_service_and_says_so() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        lines = Lines()

        class Busy(Redis):
            stack_ports = {"redis": busy}

        with Stack(Busy(), runtime="docker", reporter=lines) as s:
            assert s.endpoint("redis").port != busy
            assert s.redis.ping()
    assert any(f"port {busy} is busy" in line for line in lines.lines), lines.lines


def test_a_port_lost_between_allocation_and_start_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine itself finds the port taken (another process got it first): the
    container is replaced and the service starts on another port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        real = port_alloc.is_free
        # The race, made deterministic: allocation believes the port is free.
        monkeypatch.setattr(
            port_alloc, "is_free", lambda p, host="127.0.0.1": p == taken or real(p, host)
        )

        class Racy(Redis):
            stack_ports = {"redis": taken}

        lines = Lines()
        with Stack(Racy(), runtime="docker", reporter=lines) as s:
            assert s.endpoint("redis").port != taken
            assert s.redis.ping()
    assert any(f"port {taken} is busy" in line for line in lines.lines), lines.lines


def test_ollama_path_runs_through_docker_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNILAB_IMAGE_OLLAMA", OLLAMA_STANDIN_IMAGE)
    result = run_cli("run", EXPERIMENTS / "chat.py", "--runtime", "docker", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["summary"]["reply"] == "echo: say hello"
    ollama = run["stack"]["services"]["ollama"]
    assert ollama["image"] == OLLAMA_STANDIN_IMAGE
    assert ollama["version"] == "ollama 0.6.2-standin"
    assert ollama["url"].startswith("http://127.0.0.1:")
    # Models live in the volume every stack shares, which teardown keeps.
    shared = docker_client().volumes.get("omnilab-shared-ollama")
    assert shared.attrs["Labels"]["io.omnilab.shared"] == "true"
    assert not _stack_objects(run["id"])


def test_keep_puts_data_under_the_project_and_stop_keeps_it(workdir: Path) -> None:
    from omnilab.config import get_settings
    from omnilab.progress import QuietReporter
    from omnilab.runtimes.docker.runtime import DockerRuntime
    from omnilab.runtimes.state import all_states

    # The README's first experiment, end to end in containers: Redis, PostgreSQL, Qdrant.
    result = run_cli("run", HELLO, "--runtime", "docker", "--keep", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    run_id = run["id"]
    assert run["summary"]["qdrant_points"] == run["summary"]["postgres_rows"] == 100
    assert run["stack"]["services"]["qdrant"]["image"] == QDRANT_IMAGE
    data = workdir / "data" / "experiments" / run_id
    assert (data / "postgres" / "PG_VERSION").is_file()
    assert (data / "qdrant" / "collections" / "items").is_dir()
    assert _stack_objects(run_id), "a kept stack stays up"
    (state,) = all_states(get_settings().state_dir)
    assert state.keep and state.runtime == "docker"
    listing = run_cli("stack", "ls")
    assert run_id[:12] in listing.stdout and "kept" in listing.stdout
    exported = run_cli("stack", "env", run_id[:12]).stdout
    assert "export REDIS_URL='redis://:" in exported
    assert "export QDRANT_URL='http://127.0.0.1:" in exported and "QDRANT_API_KEY=" in exported

    # Stop everything but keep the data (what promotion does before reopening).
    runtime = DockerRuntime(get_settings(), QuietReporter())
    removed = runtime.destroy(state, remove_data=False)
    assert not _stack_objects(run_id)
    assert any(r.startswith("container redis-exp-") for r in removed)
    assert (data / "postgres" / "PG_VERSION").is_file()
    assert (data / "redis" / "dump.rdb").is_file(), "Redis saves on a graceful stop"
    assert (data / "qdrant" / "collections" / "items").is_dir()
    assert (data / "logs" / "postgres.log").is_file() or (
        workdir / "runs" / run_id / "logs" / "postgres.log"
    ).is_file()
    assert runtime.destroy(state, remove_data=False) == []  # idempotent

    down = run_cli("stack", "down", run_id[:12])
    assert down.returncode == 0, down.stderr
    assert not data.exists()
    assert not all_states(get_settings().state_dir)


def _start_sleepy(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [str(OMNILAB), "run", str(EXPERIMENTS / "sleepy.py"), "--runtime", "docker"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen, run_id = "", ""
    assert proc.stdout is not None
    while "sleeping" not in seen:
        line = proc.stdout.readline()
        assert line, f"omnilab exited early:\n{seen}"
        seen += line
        if line.startswith("run "):
            run_id = line.split()[1]
    assert len(_stack_objects(run_id)) == 3, "two containers and a network"
    return proc, run_id


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_removes_the_containers(workdir: Path, sig: int, code: int) -> None:
    proc, run_id = _start_sleepy(workdir)
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, out
    assert not _stack_objects(run_id)
    record = json.loads(run_cli("runs", "show", run_id, "--json").stdout)
    assert record["status"] == "cancelled"
    assert (workdir / "runs" / run_id / "logs" / "redis.log").is_file()


def test_sigkill_of_the_owner_leaves_nothing_within_ten_seconds(workdir: Path) -> None:
    proc, run_id = _start_sleepy(workdir)
    proc.kill()
    proc.wait()
    began = time.monotonic()
    assert wait_until(lambda: not _stack_objects(run_id), timeout=10, interval=0.1)
    took = time.monotonic() - began
    assert took < 10
    assert wait_until(lambda: not list((workdir / "state").glob("stacks/*.json")), timeout=5)
    volumes = docker_client().volumes.list(filters={"label": f"io.omnilab.stack={run_id}"})
    assert not volumes


def test_sigkill_of_a_python_session_holding_a_docker_stack(workdir: Path) -> None:
    script = workdir / "hold.py"
    script.write_text(
        "import time, omnilab\n"
        "from omnilab import Qdrant, Redis\n"
        "with omnilab.stack(Redis(), Qdrant(), runtime='docker') as s:\n"
        "    s.redis.set('k', 'v')\n"
        "    print(s.id, flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        stack_id = proc.stdout.readline().strip()
        assert stack_id and _stack_objects(stack_id)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert wait_until(lambda: not _stack_objects(stack_id), timeout=10, interval=0.1)
