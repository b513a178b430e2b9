"""A real S3-compatible object store for the tests: Garage (``../shared/bin/garage`` on
PATH), one node on free ports in a folder of its own, with a bucket and a key.

``garage`` is the session's server (one per test process); ``s3_artifacts`` points a
test's runs at a prefix of their own in its bucket, through the variables every AWS tool
reads. Without ``garage`` on PATH the tests fail, saying so: nothing is skipped.

Its fixtures reach every test: tests/conftest.py names this module among its plug-ins.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, wait_until

BUCKET = "artifacts"
REGION = "garage"


def garage_binary() -> str:
    found = shutil.which("garage")
    assert found is not None, (
        "these tests need the Garage S3 server: `garage` on PATH "
        "(CI puts ../shared/bin on PATH; ../shared/bin/README.md says how it was built)"
    )
    return found


@dataclass
class GarageServer:
    """One Garage node: its S3 endpoint, a bucket and a key that may use it."""

    folder: Path
    binary: str
    endpoint: str = ""
    key_id: str = ""
    secret: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.folder / "garage.toml"

    def start(self) -> None:
        s3, rpc, admin = free_port(), free_port(), free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f'metadata_dir = "{self.folder / "meta"}"\n'
            f'data_dir = "{self.folder / "data"}"\n'
            'db_engine = "sqlite"\n'
            "replication_factor = 1\n"
            f'rpc_bind_addr = "127.0.0.1:{rpc}"\n'
            f'rpc_public_addr = "127.0.0.1:{rpc}"\n'
            f'rpc_secret = "{secrets.token_hex(32)}"\n'
            "[s3_api]\n"
            f's3_region = "{REGION}"\n'
            f'api_bind_addr = "127.0.0.1:{s3}"\n'
            'root_domain = ".s3.garage.localhost"\n'
            "[admin]\n"
            f'api_bind_addr = "127.0.0.1:{admin}"\n'
            f'admin_token = "{secrets.token_hex(24)}"\n'
        )
        self.config.chmod(0o600)  # garage refuses a secret others can read
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config), "server"],
            cwd=self.folder,
            stdout=open(self.folder / "server.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )

        def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                httpx.get(self.endpoint, timeout=0.5)
                return True
            except httpx.HTTPError:
                return False

        assert wait_until(answers, timeout=30), f"garage did not start:\n{self.log()}"
        node = self.cli("node", "id", "-q").strip().split("@")[0]
        self.cli("layout", "assign", "-z", "dc1", "-c", "10G", node)
        self.cli("layout", "apply", "--version", "1")
        created = self.cli("key", "create", "omnilab-tests")
        self.key_id = _field(created, "Key ID")
        self.secret = _field(created, "Secret key")
        self.bucket(BUCKET)

    def bucket(self, name: str) -> str:
        """A new bucket the key may read and write."""
        self.cli("bucket", "create", name)
        self.cli("bucket", "allow", "--read", "--write", "--owner", name, "--key", self.key_id)
        return name

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [self.binary, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"garage {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that reach this server with this key."""
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
        }

    def client(self) -> Any:
        """A boto3 client of its own, to look at the objects behind omnilab's back."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=Config(signature_version="s3v4"),
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


def _field(text: str, name: str) -> str:
    found = re.search(rf"^{re.escape(name)}:\s*(\S+)", text, re.MULTILINE)
    assert found is not None, f"no {name!r} in garage's answer:\n{text}"
    return found.group(1)


@pytest.fixture(scope="session")
def garage(tests_tmp: Path) -> Iterator[GarageServer]:
    server = GarageServer(tests_tmp / f"garage-{os.getpid()}", garage_binary())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class S3Artifacts:
    """Where a test's runs put their files: ``url`` (``s3://artifacts/<test prefix>``),
    the server, and the object key of a run's file."""

    server: GarageServer
    url: str
    prefix: str

    def key(self, run_id: str, path: str) -> str:
        return f"{self.prefix}/{run_id}/{path}"

    def object(self, run_id: str, path: str) -> bytes:
        body = self.server.client().get_object(Bucket=BUCKET, Key=self.key(run_id, path))
        return bytes(body["Body"].read())


@pytest.fixture
def s3_artifacts(
    garage: GarageServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> S3Artifacts:
    """This test's runs upload to a prefix of their own in the session's Garage, with
    the standard AWS variables only (no profile or config file of this machine's)."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    for name, value in garage.env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(workdir / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(workdir / "no-aws-credentials"))
    url = f"s3://{BUCKET}/{prefix}"
    monkeypatch.setenv("OMNILAB_ARTIFACTS_URL", url)
    return S3Artifacts(garage, url, prefix)
