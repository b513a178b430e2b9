"""A service omnilab does not ship, written as a third party would: memcached.

It lives outside ``omnilab/`` and is found only through the ``omnilab.services`` entry
point its distribution declares (``../omnilab_memcached-0.1.0.dist-info``): a folder
on ``sys.path`` (``PYTHONPATH``) is all it takes, as after ``pip install``.
"""

from __future__ import annotations

import shutil
import socket
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.errors import ServiceUnavailable
from omnilab.services.base import (
    ContainerPlan,
    Credentials,
    Endpoint,
    LaunchInfo,
    LocalRecipe,
    ProcessPlan,
    Service,
)
from omnilab.services.binaries import version_line

if TYPE_CHECKING:
    from omnilab.config import Settings


class Memcached(Service):
    """memcached, no authentication (it has none in its text protocol): one per stack,
    bound to 127.0.0.1 like every other service."""

    name: ClassVar[str] = "memcached"
    alias: ClassVar[str] = "memcached-exp"
    native_ports: ClassVar[dict[str, int]] = {"memcached": 11211}
    stack_ports: ClassVar[dict[str, int]] = {"memcached": 11212}
    production_ports: ClassVar[dict[str, int]] = {"memcached": 11211}
    default_image: ClassVar[str] = "memcached:1.6.38"
    env_names: ClassVar[tuple[str, ...]] = ("MEMCACHED_URL",)
    unbuildable_reason: ClassVar[str] = "this plug-in ships no image recipe"

    def new_credentials(self) -> Credentials:
        return Credentials()

    def local_recipe(self, settings: Settings) -> LocalRecipe:
        binary = shutil.which("memcached")
        if binary is None:
            raise ServiceUnavailable("memcached: no memcached on PATH (apt install memcached)")
        version = version_line(binary, "-V")

        def make(launch: LaunchInfo) -> ProcessPlan:
            return ProcessPlan(
                argv=[
                    binary,
                    "--listen=127.0.0.1",
                    f"--port={launch.ports['memcached']}",
                    "--udp-port=0",
                    "--memory-limit=32",
                ],
                unprivileged=True,  # memcached refuses to run as root without -u
            )

        return LocalRecipe(
            kind="process",
            source=f"memcached {version} (system)",
            ports=("memcached",),
            make=make,
            version=version,
        )

    def container_plan(self, credentials: Credentials) -> ContainerPlan:
        return ContainerPlan(image=self.image(), command=["memcached", "--memory-limit=32"])

    def probe(self, endpoint: Endpoint) -> None:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=1) as sock:
            sock.sendall(b"version\r\n")
            if not sock.recv(64).startswith(b"VERSION "):
                raise ConnectionError("memcached did not answer `version`")

    def client(self, endpoint: Endpoint) -> Any:
        from pymemcache.client.base import Client

        return Client((endpoint.host, endpoint.port), connect_timeout=2, timeout=5)

    def url(self, endpoint: Endpoint, *, secrets: bool = False) -> str:
        return f"memcached://{endpoint.host}:{endpoint.port}"

    def server_version(self, endpoint: Endpoint) -> str | None:
        client = self.client(endpoint)
        try:
            return f"memcached {client.version().decode()}"
        finally:
            client.close()
