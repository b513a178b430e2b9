"""Qdrant: ``qdrant-exp`` in OmniMind's experiments stack.

Locally it runs a Qdrant server binary when there is one (``OMNILAB_QDRANT_BINARY``, or
``qdrant`` on PATH: :mod:`.binary`); otherwise the stack uses qdrant-client's local mode,
the same client API over an on-disk store inside the experiment's process. Code written
against ``ctx.qdrant`` works unchanged on both, but only a server can be reached from a
subprocess or a container (``QDRANT_URL``), so the start line says which one a run got.

Under Docker it runs the pinned official image, or ``omnilab/qdrant:<version>-bookworm``
that ``omnilab images build qdrant`` makes from the same binary on the Debian base.
"""

from __future__ import annotations

import json
import signal
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from omnilab.errors import ServiceUnavailable
from omnilab.services.base import (
    DEBIAN_SUITE,
    BuiltImage,
    ContainerPlan,
    Credentials,
    Endpoint,
    LaunchInfo,
    LocalRecipe,
    ProcessPlan,
    Service,
    http_problem,
    tcp_problem,
)
from omnilab.services.qdrant import binary as qdrant_binary

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from omnilab.config import Settings


def _client_version() -> str:
    try:
        return metadata.version("qdrant-client")
    except metadata.PackageNotFoundError:
        return "?"


class Qdrant(Service):
    """A private Qdrant for one run; ``ctx.qdrant`` is a ``qdrant_client.QdrantClient``."""

    name: ClassVar[str] = "qdrant"
    alias: ClassVar[str] = "qdrant-exp"
    native_ports: ClassVar[dict[str, int]] = {"http": 6333, "grpc": 6334}
    stack_ports: ClassVar[dict[str, int]] = {"http": 6335, "grpc": 6336}
    production_ports: ClassVar[dict[str, int]] = {"http": 6333, "grpc": 6334}
    default_image: ClassVar[str] = f"qdrant/qdrant:v{qdrant_binary.VERSION}"
    env_names: ClassVar[tuple[str, ...]] = ("QDRANT_URL", "QDRANT_API_KEY")
    secret_variable: ClassVar[str | None] = "QDRANT_API_KEY"
    in_default_stack: ClassVar[bool] = True
    switch_order: ClassVar[int] = 20
    built_image: ClassVar[BuiltImage | None] = BuiltImage(
        tag=f"omnilab/qdrant:{qdrant_binary.VERSION}-{DEBIAN_SUITE}",
        description=f"Qdrant {qdrant_binary.VERSION} from a server binary you give (no "
        "Debian package has it), the official image's interface",
        context="qdrant",
        binary="qdrant",
    )
    optional_locally: ClassVar[bool] = True

    def __init__(self, *, image: str | None = None, embedded: bool | None = None) -> None:
        """``embedded=True`` forces qdrant-client local mode, ``False`` requires a server."""
        super().__init__(image=image)
        self.embedded = embedded

    def local_recipe(self, settings: Settings) -> LocalRecipe:
        found = None if self.embedded is True else qdrant_binary.find()
        if found is None:
            if self.embedded is False:
                raise ServiceUnavailable(
                    "qdrant: Qdrant(embedded=False) needs a Qdrant server binary on PATH "
                    f"(or {qdrant_binary.VARIABLE}), and none was found"
                )
            why = (
                "asked for" if self.embedded else f"no qdrant on PATH nor {qdrant_binary.VARIABLE}"
            )
            return LocalRecipe(
                kind="embedded",
                source=f"qdrant-client {_client_version()} local mode (embedded, no server: {why})",
                version=f"qdrant-client {_client_version()} local mode",
            )
        path = found.path

        def make(launch: LaunchInfo) -> ProcessPlan:
            # The API key goes in a config file (0600, deleted once the server answers),
            # never on the command line nor in the server's environment.
            secrets = launch.data_dir / "qdrant-secrets.yaml"
            return ProcessPlan(
                argv=[str(path), "--config-path", str(secrets)],
                env={
                    "QDRANT__SERVICE__HOST": "127.0.0.1",
                    "QDRANT__SERVICE__HTTP_PORT": str(launch.ports["http"]),
                    "QDRANT__SERVICE__GRPC_PORT": str(launch.ports["grpc"]),
                    "QDRANT__STORAGE__STORAGE_PATH": str(launch.data_dir / "storage"),
                    "QDRANT__STORAGE__SNAPSHOTS_PATH": str(launch.data_dir / "snapshots"),
                    "QDRANT__TELEMETRY_DISABLED": "true",
                },
                secret_files={
                    secrets.name: "service:\n  api_key: "
                    + json.dumps(launch.credentials.password or "")
                    + "\n"
                },
                # Qdrant's graceful stop flushes its storage and takes ~0.3 s; a
                # throwaway stack's storage is deleted anyway, and Qdrant keeps nothing
                # outside it.
                discard_signal=signal.SIGKILL,
            )

        return LocalRecipe(
            kind="process",
            source=f"qdrant {found.version} server ({path}, from {found.origin})",
            ports=("http", "grpc"),
            make=make,
            version=f"qdrant {found.version}",
        )

    @classmethod
    def image_binary(cls, given: Path | None = None) -> Path:
        """The Qdrant server binary ``omnilab images build qdrant`` copies into its image:
        exactly the pinned version, which the image's tag names."""
        found = qdrant_binary.find(given)
        tag = cls.built_image.tag if cls.built_image else cls.default_image
        wanted = qdrant_binary.VERSION
        download = f"{qdrant_binary.RELEASES}/tag/v{wanted}"
        if found is None:
            raise ServiceUnavailable(
                f"qdrant: building {tag} needs a Qdrant {wanted} server binary (no Debian "
                f"package has one): `omnilab images build qdrant --binary PATH`, "
                f"{qdrant_binary.VARIABLE}, or `qdrant` on PATH ({download})"
            )
        if found.version != wanted:
            raise ServiceUnavailable(
                f"qdrant: {found.path} ({found.origin}) is Qdrant {found.version}, but {tag} "
                f"is Qdrant {wanted} ({download}); or run another version with "
                "OMNILAB_IMAGE_QDRANT"
            )
        return found.path

    def container_plan(self, credentials: Credentials) -> ContainerPlan:
        return ContainerPlan(
            image=self.image(),
            env={
                "QDRANT__SERVICE__API_KEY": credentials.password or "",
                "QDRANT__TELEMETRY_DISABLED": "true",
            },
            data_path="/qdrant/storage",
        )

    def compose_healthcheck(self, credentials: Credentials) -> list[str]:
        # Readiness as the docker runtime checks it (/readyz answers without the API
        # key), with bash alone: neither image has curl.
        port = self.native_ports["http"]
        request = r"printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3"
        script = f"exec 3<>/dev/tcp/127.0.0.1/{port} && {request} && head -n1 <&3 | grep -q ' 200 '"
        return ["CMD", "bash", "-c", script]

    def _base_url(self, endpoint: Endpoint) -> str:
        return f"http://{endpoint.host}:{endpoint.ports['http']}"

    def probe(self, endpoint: Endpoint) -> None:
        if endpoint.path is not None:
            # Local mode is ready once its store opens. Opening it here also loads
            # qdrant-client while the other services start, not later in the experiment.
            from qdrant_client import QdrantClient

            QdrantClient(path=str(endpoint.path)).close()
            return
        import httpx

        headers = {"api-key": endpoint.credentials.password or ""}
        response = httpx.get(f"{self._base_url(endpoint)}/readyz", headers=headers, timeout=2)
        response.raise_for_status()

    def client(self, endpoint: Endpoint) -> QdrantClient:
        from qdrant_client import QdrantClient

        if endpoint.path is not None:
            return QdrantClient(path=str(endpoint.path))
        with warnings.catch_warnings():
            # The stack is on loopback; an API key over plain HTTP is expected there.
            warnings.filterwarnings("ignore", message="Api key is used with an insecure")
            return QdrantClient(
                url=self._base_url(endpoint),
                grpc_port=endpoint.ports.get("grpc", 6334),
                api_key=endpoint.credentials.password,
                https=False,
                timeout=30,
                # Its check runs in a thread that outlives a short experiment's stack and
                # then warns of a server it cannot reach; omnilab checked the binary's
                # version before starting it, and records the server's with the run.
                check_compatibility=False,
            )

    def url(self, endpoint: Endpoint, *, secrets: bool = False) -> str:
        if endpoint.path is not None:
            return f"file://{endpoint.path}"
        return self._base_url(endpoint)

    def env(self, endpoint: Endpoint) -> dict[str, str]:
        if endpoint.path is not None:
            return {"QDRANT_PATH": str(endpoint.path)}
        return {
            "QDRANT_URL": self._base_url(endpoint),
            "QDRANT_API_KEY": endpoint.credentials.password or "",
        }

    def server_version(self, endpoint: Endpoint) -> str | None:
        if endpoint.path is not None:
            return f"qdrant-client {_client_version()} local mode"
        import httpx

        headers = {"api-key": endpoint.credentials.password or ""}
        body = httpx.get(self._base_url(endpoint), headers=headers, timeout=2).json()
        return f"qdrant {body.get('version', '?')}"

    @classmethod
    def production_url(cls, settings: Settings) -> str | None:
        return settings.qdrant_url

    @classmethod
    def production_problem(cls, settings: Settings) -> str | None:
        url = settings.qdrant_url
        key = {"api-key": settings.qdrant_api_key} if settings.qdrant_api_key else None
        return tcp_problem(url, cls.production_ports["http"]) or http_problem(url, "/readyz", key)
