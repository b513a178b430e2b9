"""Qdrant: ``qdrant-exp`` in the seed's stack.

Locally it runs a ``qdrant`` binary when one is installed; otherwise the stack uses
qdrant-client's local mode, the same client API over an on-disk store inside the
experiment's process. Code written against ``ctx.qdrant`` works unchanged on both.
"""

from __future__ import annotations

import os
import warnings
from importlib import metadata
from typing import TYPE_CHECKING, ClassVar

from omnilab.services.base import (
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
from omnilab.services.binaries import version_line, which

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
    default_image: ClassVar[str] = "qdrant/qdrant:v1.13.4"
    env_names: ClassVar[tuple[str, ...]] = ("QDRANT_URL", "QDRANT_API_KEY")
    secret_variable: ClassVar[str | None] = "QDRANT_API_KEY"
    in_default_stack: ClassVar[bool] = True
    switch_order: ClassVar[int] = 20
    unbuildable_reason: ClassVar[str] = "no Debian package provides Qdrant"
    optional_locally: ClassVar[bool] = True

    def __init__(self, *, image: str | None = None, embedded: bool | None = None) -> None:
        """``embedded=True`` forces qdrant-client local mode, ``False`` requires a server."""
        super().__init__(image=image)
        self.embedded = embedded

    def local_recipe(self, settings: Settings) -> LocalRecipe:
        binary = None
        if self.embedded is not True:
            explicit = os.environ.get("OMNILAB_QDRANT_BINARY")
            binary = which([explicit] if explicit else ["qdrant"])
        if binary is None:
            if self.embedded is False:
                from omnilab.errors import ServiceUnavailable

                raise ServiceUnavailable(
                    "qdrant: Qdrant(embedded=False) needs a qdrant server binary on PATH "
                    "(or OMNILAB_QDRANT_BINARY), and none was found"
                )
            return LocalRecipe(
                kind="embedded",
                source=f"qdrant-client {_client_version()} local mode (embedded, no server)",
                version=f"qdrant-client {_client_version()} local mode",
            )
        version = version_line(str(binary))

        def make(launch: LaunchInfo) -> ProcessPlan:
            storage = launch.data_dir / "storage"
            return ProcessPlan(
                argv=[str(binary)],
                env={
                    "QDRANT__SERVICE__HOST": "127.0.0.1",
                    "QDRANT__SERVICE__HTTP_PORT": str(launch.ports["http"]),
                    "QDRANT__SERVICE__GRPC_PORT": str(launch.ports["grpc"]),
                    "QDRANT__SERVICE__API_KEY": launch.credentials.password or "",
                    "QDRANT__STORAGE__STORAGE_PATH": str(storage),
                    "QDRANT__STORAGE__SNAPSHOTS_PATH": str(launch.data_dir / "snapshots"),
                    "QDRANT__TELEMETRY_DISABLED": "true",
                },
            )

        return LocalRecipe(
            kind="process",
            source=f"qdrant {version or ''} (system)",
            ports=("http", "grpc"),
            make=make,
            version=version,
        )

    def container_plan(self, credentials: Credentials) -> ContainerPlan:
        return ContainerPlan(
            image=self.image(),
            env={
                "QDRANT__SERVICE__API_KEY": credentials.password or "",
                "QDRANT__TELEMETRY_DISABLED": "true",
            },
            data_path="/qdrant/storage",
        )

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
