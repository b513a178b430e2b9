"""A cluster of hosts for the tests: containers on a private Docker network of their own.

Each host is a container of this machine's engine, made from images built here from
Debian's packages (no registry): PostgreSQL (the tracking store) and Redis (the queue, and
production's Redis) from omnilab's own service images, an S3 server (Garage, the real
program from the shared programs folder, mounted read-only and found on ``PATH``), an API
host and worker hosts from the cluster's host image (omnilab installed from its wheels,
Debian's redis-server for the workers' local runtime). Every host knows the others by
name only (``pg``, ``redis``, ``s3``, ``api``, ``worker-a``...): nothing is shared between
them but the network, so a host can be killed (``docker kill``), started again, or cut
off (``docker network disconnect``) as a machine would be.

The test process reaches the API on its container's address on the network (a Linux
host routes to its bridges), as a user on the same network would.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from omnilab.progress import Reporter
from omnilab.runtimes.docker.images import ImageSpec
from tests.support import SUPPORT, wait_until
from tests.support.docker_support import (
    POSTGRES_IMAGE,
    REDIS_IMAGE,
    TEST_LABEL,
    build_test_images,
    docker_client,
)

CLUSTER_DIR = SUPPORT / "cluster"
#: The experiments every worker host has (mounted read-only at the same path on each).
CLUSTER_EXPERIMENTS = CLUSTER_DIR / "experiments"
EXPERIMENTS_VOLUME = {str(CLUSTER_EXPERIMENTS): {"bind": "/experiments", "mode": "ro"}}
HOST_IMAGE = ImageSpec(
    name="cluster-host",
    tag="omnilab-test/cluster-host:bookworm",
    description="tests only: a host of the tests' cluster (omnilab, redis-server)",
    # Its own folder: the experiments beside it can change without a rebuild.
    context=CLUSTER_DIR / "image",
    default=False,
    wheels=True,
)
#: Extras the host image installs besides omnilab's dependencies (artifacts in S3).
HOST_EXTRAS = "s3"
BUCKET = "artifacts"
SCOPE_OPTIONS = ("--scope", "read", "--scope", "run", "--scope", "promote")
#: Fast sweeps and a short heartbeat TTL: a host lost is noticed within seconds.
FAST = {
    "OMNILAB_RECONCILE_INTERVAL": "0.5",
    "OMNILAB_RESEND_AFTER": "0.5",
    "OMNILAB_WORKER_TTL": "6",
    "OMNILAB_API_KEY_CACHE": "0",
}


def build_host_image() -> str:
    """The host image (and the service images), built or found current."""
    previous = os.environ.get("OMNILAB_IMAGE_EXTRAS")
    os.environ["OMNILAB_IMAGE_EXTRAS"] = HOST_EXTRAS
    try:
        build_test_images(Reporter(sys.stderr))
        from omnilab.runtimes.docker.images import build

        build([HOST_IMAGE], Reporter(sys.stderr))
    finally:
        if previous is None:
            os.environ.pop("OMNILAB_IMAGE_EXTRAS", None)
        else:
            os.environ["OMNILAB_IMAGE_EXTRAS"] = previous
    return HOST_IMAGE.tag


def shared_programs() -> Path:
    """The folder holding the ``garage`` and ``qdrant`` programs (found on PATH)."""
    found = shutil.which("garage")
    assert found is not None, (
        "the cluster tests need the Garage S3 server: `garage` on PATH "
        "(CI puts ../shared/bin on PATH)"
    )
    return Path(found).resolve().parent


@dataclass
class Cluster:
    """A private network and the hosts on it; :meth:`close` removes every one of them."""

    label: str
    image: str
    workdir: Path
    network: Any = None
    hosts: dict[str, Any] = field(default_factory=dict)
    pg_password: str = field(default_factory=lambda: secrets.token_hex(12))
    redis_password: str = field(default_factory=lambda: secrets.token_hex(12))
    s3_key_id: str = field(default_factory=lambda: "GK" + secrets.token_hex(12))
    s3_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    api_key: str | None = None

    def __post_init__(self) -> None:
        self.client = docker_client()
        self.labels = {TEST_LABEL: self.label}
        self.network = self.client.networks.create(
            f"omnilab-cluster-{self.label}", driver="bridge", labels=self.labels
        )

    # -- the shared parts ------------------------------------------------------------

    @property
    def tracking_url(self) -> str:
        return f"postgresql://postgres:{self.pg_password}@pg:5432/postgres"

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.redis_password}@redis:6379/0"

    def env(self, **extra: str) -> dict[str, str]:
        """What every omnilab host of the cluster is configured with."""
        return {
            **FAST,
            "OMNILAB_TRACKING_URL": self.tracking_url,
            "REDIS_URL": self.redis_url,
            "OMNILAB_EXPERIMENTS_DIR": "/experiments",
            "OMNILAB_RUNTIME": "local",
            "OMNILAB_ARTIFACTS_URL": f"s3://{BUCKET}/runs",
            "AWS_ACCESS_KEY_ID": self.s3_key_id,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret,
            "AWS_ENDPOINT_URL": "http://s3:3900",
            "AWS_REGION": "garage",
            **extra,
        }

    def start_databases(self) -> None:
        self._run(
            "pg",
            POSTGRES_IMAGE,
            environment={"POSTGRES_PASSWORD": self.pg_password},
        )
        self._run(
            "redis",
            REDIS_IMAGE,
            command=["redis-server", "--requirepass", self.redis_password, "--appendonly", "no"],
        )
        assert wait_until(
            lambda: self.exec("pg", ["pg_isready", "-h", "127.0.0.1", "-q"])[0] == 0,
            timeout=60,
        ), f"PostgreSQL did not start:\n{self.logs('pg')}"
        assert wait_until(
            lambda: (
                self.exec(
                    "redis", ["redis-cli", "-a", self.redis_password, "--no-auth-warning", "ping"]
                )[1].strip()
                == "PONG"
            ),
            timeout=30,
        ), f"Redis did not start:\n{self.logs('redis')}"

    def start_s3(self) -> None:
        """Garage, one node, one bucket, one key: the test's own credentials imported."""
        folder = self.workdir / "s3"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "garage.toml").write_text(
            "\n".join(
                [
                    'metadata_dir = "/var/lib/garage/meta"',
                    'data_dir = "/var/lib/garage/data"',
                    'db_engine = "sqlite"',
                    "replication_factor = 1",
                    'rpc_bind_addr = "0.0.0.0:3901"',
                    'rpc_public_addr = "127.0.0.1:3901"',
                    f'rpc_secret = "{secrets.token_hex(32)}"',
                    "[s3_api]",
                    's3_region = "garage"',
                    'api_bind_addr = "0.0.0.0:3900"',
                    'root_domain = ".s3.garage.localhost"',
                    "[admin]",
                    'api_bind_addr = "127.0.0.1:3903"',
                    f'admin_token = "{secrets.token_hex(24)}"',
                    "",
                ]
            )
        )
        self._run(
            "s3",
            self.image,
            command=["garage", "-c", "/etc/garage/garage.toml", "server"],
            user="root",
            volumes={str(folder): {"bind": "/etc/garage", "mode": "ro"}},
        )
        garage = ["garage", "-c", "/etc/garage/garage.toml"]
        assert wait_until(lambda: self.exec("s3", [*garage, "status"])[0] == 0, timeout=30), (
            f"Garage did not start:\n{self.logs('s3')}"
        )
        node = self.exec("s3", [*garage, "node", "id", "-q"])[1].strip().split("@")[0]
        for step in (
            ["layout", "assign", "-z", "dc1", "-c", "1G", node],
            ["layout", "apply", "--version", "1"],
            ["key", "import", "--yes", "-n", "tests", self.s3_key_id, self.s3_secret],
            ["bucket", "create", BUCKET],
            ["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "tests"],
        ):
            code, out = self.exec("s3", [*garage, *step])
            assert code == 0, f"garage {step[0]} {step[1]}: {out}"

    # -- omnilab hosts -----------------------------------------------------------------

    def start_api(self, name: str = "api", **env: str) -> str:
        """``omnilab serve`` on ``name``, listening on the network; returns its URL."""
        self._run(
            name,
            self.image,
            command=["omnilab", "serve", "--log-level", "warning"],
            environment=self.env(OMNILAB_API_HOST="0.0.0.0", **env),
            volumes=EXPERIMENTS_VOLUME,
        )
        url = self.url(name)

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(healthy, timeout=60), f"the API did not start:\n{self.logs(name)}"
        if self.api_key is None:
            result = self.hosts[name].exec_run(
                ["omnilab", "api-key", "create", "--name", "tests", *SCOPE_OPTIONS],
                environment=self.env(),
                demux=True,
            )
            stdout, stderr = result.output
            assert result.exit_code == 0, (stderr or b"").decode(errors="replace")
            self.api_key = stdout.decode().strip()
        return url

    def url(self, name: str) -> str:
        """The API on host ``name``, as the test process reaches it."""
        return f"http://{self.ip(name)}:8765"

    def start_worker(self, name: str, *args: str, **env: str) -> None:
        """``omnilab worker ARGS`` on host ``name`` (its host name is ``name``)."""
        self._run(
            name,
            self.image,
            command=["omnilab", "worker", *args],
            environment=self.env(**env),
            volumes=EXPERIMENTS_VOLUME,
        )
        assert wait_until(
            lambda: "slot(s)" in self.logs(name) or self.status(name) != "running", timeout=60
        ), f"worker {name} did not start:\n{self.logs(name)}"
        assert self.status(name) == "running", f"worker {name} exited:\n{self.logs(name)}"

    def api(self, url: str) -> httpx.Client:
        assert self.api_key is not None
        return httpx.Client(
            # Longer than the API's own waits (a task handed to another host: 30 s to
            # start), so that a slow answer reads as the API's, not as the client's timeout.
            base_url=url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=60,
        )

    # -- hosts lost and found ------------------------------------------------------------

    def kill(self, name: str) -> None:
        self.hosts[name].kill()
        self.hosts[name].wait(timeout=30)

    def restart(self, name: str) -> None:
        """Start a stopped or killed host again, with what it had on its disk."""
        self.hosts[name].start()

    def disconnect(self, name: str) -> None:
        self.network.disconnect(self.hosts[name])

    def reconnect(self, name: str) -> None:
        self.network.connect(self.hosts[name], aliases=[name])

    # -- looking inside --------------------------------------------------------------

    def status(self, name: str) -> str:
        container = self.hosts[name]
        container.reload()
        return str(container.status)

    def ip(self, name: str) -> str:
        container = self.hosts[name]
        container.reload()
        return str(container.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"])

    def logs(self, name: str) -> str:
        return str(self.hosts[name].logs().decode(errors="replace"))

    def exec(
        self, name: str, command: list[str], environment: dict[str, str] | None = None
    ) -> tuple[int, str]:
        result = self.hosts[name].exec_run(command, environment=environment, demux=False)
        return int(result.exit_code), result.output.decode(errors="replace")

    def read_file(self, name: str, path: str) -> bytes:
        stream, _ = self.hosts[name].get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            assert member is not None
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()

    def close(self) -> None:
        for container in self.hosts.values():
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        with contextlib.suppress(Exception):
            self.network.remove()

    def _run(self, name: str, image: str, **options: Any) -> None:
        volumes = dict(options.pop("volumes", {}))
        volumes[str(shared_programs())] = {"bind": "/opt/shared-bin", "mode": "ro"}
        self.hosts[name] = self.client.containers.run(
            image,
            name=f"omnilab-cluster-{self.label}-{name}",
            hostname=name,
            detach=True,
            labels=self.labels,
            network=self.network.name,
            # The alias: hosts reach each other by name, as machines would by DNS.
            networking_config={
                self.network.name: self.client.api.create_endpoint_config(aliases=[name])
            },
            volumes=volumes,
            **options,
        )


@contextlib.contextmanager
def cluster(label: str, workdir: Path) -> Iterator[Cluster]:
    image = build_host_image()
    made = Cluster(label=label, image=image, workdir=workdir)
    try:
        yield made
    finally:
        made.close()


def wait_for(predicate: Any, timeout: float, what: str, cluster: Cluster, *hosts: str) -> None:
    """Wait; on a timeout, fail with the named hosts' logs (what a person would look at)."""
    if wait_until(predicate, timeout=timeout, interval=0.25):
        return
    logs = "\n".join(f"--- {h}:\n{cluster.logs(h)[-3000:]}" for h in hosts)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
