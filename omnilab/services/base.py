"""What every service spec provides, and the plans runtimes carry out.

A service module (``services/redis.py`` and friends) holds everything particular to its
service: how it runs as a local process or a container, how to tell it is ready, how to
build a connected client. Runtimes only execute the plans described here and never
import a service module, so adding a service means adding one file.
"""

from __future__ import annotations

import os
import secrets
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from omnilab.resources import Resources

if TYPE_CHECKING:
    from omnilab.config import Settings


@dataclass(frozen=True)
class Credentials:
    """Per-run secrets. ``repr`` hides the password so it never lands in a log line."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None

    @staticmethod
    def random_password() -> str:
        # URL-safe alphabet: the password can sit in a connection URL without quoting.
        return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Endpoint:
    """How to reach one running service.

    ``host`` and ``ports`` are as seen by the code that will connect: the host side for
    experiments running on the host, the network alias and container ports for code
    running inside the stack's network.
    """

    service: str
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    credentials: Credentials = field(default_factory=Credentials)
    #: Data directory of an embedded (in-process) service such as qdrant-client local mode.
    path: Path | None = None
    #: Base URL of a service omnilab did not start (for example ``OLLAMA_BASE_URL``).
    external_url: str | None = None
    #: The server runs in a container, in a network of its own: it reaches no server on
    #: this host's loopback (a fork's Qdrant cannot download production's shards itself).
    contained: bool = False

    @property
    def port(self) -> int:
        """The main port (the first one declared)."""
        return next(iter(self.ports.values()))

    def with_host(self, host: str, ports: dict[str, int]) -> Endpoint:
        return replace(self, host=host, ports=dict(ports))


@dataclass
class ProcessPlan:
    """A server to run as a local child process."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    #: Commands run to completion before the server (e.g. ``initdb``), same user, same env.
    setup: list[list[str]] = field(default_factory=list)
    #: Files written (mode 0600) into the data directory before setup and deleted after
    #: it, so a secret never appears on a command line or in the environment.
    secret_files: dict[str, str] = field(default_factory=dict)
    #: The server refuses to run as root (PostgreSQL): drop to the configured service user.
    unprivileged: bool = False
    stop_signal: int = signal.SIGTERM
    #: The signal for a stop whose data is removed right after (a throwaway stack's
    #: teardown): nothing is worth flushing, so the server need not shut down cleanly.
    #: ``None``: ``stop_signal``, for servers whose files outlive the stack (Ollama's
    #: models) or whose abrupt end leaves something outside their data directory.
    discard_signal: int | None = None


@dataclass(frozen=True)
class LaunchInfo:
    """What a runtime hands a service when asking for its process plan."""

    ports: dict[str, int]
    data_dir: Path
    credentials: Credentials


LocalKind = Literal["process", "embedded", "external"]


@dataclass
class LocalRecipe:
    """How the local runtime will provide a service, decided before anything starts.

    - ``process``: ``make`` builds the :class:`ProcessPlan` once ports are allocated;
    - ``embedded``: the service lives inside the experiment's own process (qdrant-client
      local mode), in a data directory the runtime creates;
    - ``external``: an already running server at ``url`` that omnilab does not own.
    """

    kind: LocalKind
    #: One line for the user: which binary or mode, and its version when known.
    source: str
    ports: tuple[str, ...] = ()
    make: Callable[[LaunchInfo], ProcessPlan] | None = None
    url: str | None = None
    version: str | None = None


@dataclass
class ContainerPlan:
    """A service to run as a container (used by the docker runtime)."""

    image: str
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None
    #: Container-side data directory, kept on tmpfs or a volume by the runtime.
    data_path: str | None = None
    #: Container-side directory every stack shares through one named volume that
    #: teardown keeps (Ollama's models: gigabytes, pulled once, not per run).
    shared_path: str | None = None
    takes_gpu: bool = False


#: The Debian release omnilab's own images are built from (``omnilab images build``).
DEBIAN_SUITE = "bookworm"


@dataclass(frozen=True)
class BuiltImage:
    """An image omnilab builds for a service on its Debian base, with no registry."""

    #: Pinned tag, never ``latest``: ``omnilab/redis:7.0-bookworm``.
    tag: str
    description: str
    #: The recipe's folder under ``dockerfiles/``.
    context: str
    #: A server program the recipe copies into the image because no Debian package
    #: provides it (Qdrant): its file name in the build context. The user hands it over
    #: (``omnilab images build qdrant --binary PATH``), else the service finds it
    #: (:meth:`Service.image_binary`); its content is part of the image's fingerprint,
    #: so another binary rebuilds the image. None: Debian packages only.
    binary: str | None = None


class Service(ABC):
    """A service an experiment can ask for: one subclass per kind of server."""

    #: Short name used in ``ctx.<name>``, container names and the CLI.
    name: ClassVar[str]
    #: Network alias inside a stack (OmniMind's host names: ``redis-exp`` ...).
    alias: ClassVar[str]
    #: Ports the server listens on natively (and inside its container), by role.
    native_ports: ClassVar[dict[str, int]]
    #: Preferred host ports for the first experiment stack (design.md's table).
    stack_ports: ClassVar[dict[str, int]]
    #: Production ports on localhost; experiment stacks must never take them.
    production_ports: ClassVar[dict[str, int]]
    #: Pinned image; ``OMNILAB_IMAGE_<NAME>`` or ``image=`` overrides it.
    default_image: ClassVar[str]
    #: Whether the docker runtime hands this service the run's GPUs.
    takes_gpu: ClassVar[bool] = False
    #: This service's own defaults where they differ from :data:`omnilab.resources.DEFAULTS`
    #: (Ollama holds a model in memory); what an experiment declares overrides them.
    default_resources: ClassVar[Resources | None] = None
    #: Environment variable names this service exports for clients, URL first.
    env_names: ClassVar[tuple[str, ...]] = ()
    #: The variable that holds this service's secret where one is handed around by name
    #: (the compose file's env file): ``REDIS_PASSWORD``... None: no secret.
    secret_variable: ClassVar[str | None] = None
    #: Where a promotion switches this service's items among the others': lower first.
    #: PostgreSQL first (its switch is transactional and the likeliest to fail), Redis
    #: last (readers of cached values are the most tolerant of a moment's mix).
    switch_order: ClassVar[int] = 50
    #: The image ``omnilab images build`` makes for this service from Debian packages,
    #: or None; then :attr:`unbuildable_reason` says why (shown to the user).
    built_image: ClassVar[BuiltImage | None] = None
    unbuildable_reason: ClassVar[str] = "omnilab has no recipe for its image"
    #: A stack can do without it on the local runtime (``omnilab doctor`` warns instead of
    #: reporting a problem when it is missing).
    optional_locally: ClassVar[bool] = False
    #: Started by a bare ``omnilab stack up`` (no service named).
    in_default_stack: ClassVar[bool] = False

    def __init__(self, *, image: str | None = None) -> None:
        self._image = image

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(type(self))

    # -- identity -------------------------------------------------------------------

    def image(self) -> str:
        return self.image_override() or self.default_image

    @property
    def chosen_image(self) -> str | None:
        """The ``image=`` this service was declared with, if any (not the environment's)."""
        return self._image or None

    def image_override(self) -> str | None:
        """The image the user chose (``image=``, then ``OMNILAB_IMAGE_<NAME>``), if any."""
        return self._image or os.environ.get(f"OMNILAB_IMAGE_{self.name.upper()}") or None

    def new_credentials(self) -> Credentials:
        """Fresh secrets for one stack; never reused between runs."""
        return Credentials(password=Credentials.random_password())

    @classmethod
    def image_binary(cls, given: Path | None = None) -> Path:
        """The program :attr:`built_image` copies into its image (``built_image.binary``),
        checked to be the right one: ``given`` (``--binary PATH``), else where the service
        looks for it. UsageError, one line, when there is none or it is the wrong one."""
        from omnilab.errors import UsageError

        raise UsageError(f"{cls.name}: its image is built from Debian packages only")

    # -- running ----------------------------------------------------------------------

    @abstractmethod
    def local_recipe(self, settings: Settings) -> LocalRecipe:
        """Decide how to run without Docker, or raise ServiceUnavailable (nothing started)."""

    @abstractmethod
    def container_plan(self, credentials: Credentials) -> ContainerPlan:
        """How to run as a container from :meth:`image`."""

    @abstractmethod
    def probe(self, endpoint: Endpoint) -> None:
        """Return when the service really answers; raise anything while it does not."""

    def after_ready(self, endpoint: Endpoint) -> None:
        """One-time setup once the server answers (PostgreSQL creates the run's database)."""

    def persist(self, endpoint: Endpoint) -> None:
        """Make the data on disk complete before a stack whose data is retained stops.

        Most servers write everything on a clean stop; Redis runs without snapshots in a
        stack and must be told to save.
        """

    def spec_options(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this spec, to reopen a retained stack later."""
        return {name.lstrip("_"): value for name, value in vars(self).items()}

    def compose_healthcheck(self, credentials: Credentials) -> list[str]:
        """A compose ``healthcheck.test`` run inside the service's container (its image's
        own tools), for ``omnilab compose export``."""
        port = next(iter(self.native_ports.values()))
        return ["CMD-SHELL", f"bash -c ':> /dev/tcp/127.0.0.1/{port}'"]

    # -- using ------------------------------------------------------------------------

    @abstractmethod
    def client(self, endpoint: Endpoint) -> Any:
        """An official client connected to ``endpoint``."""

    def close_client(self, client: Any) -> None:
        close = getattr(client, "close", None)
        if callable(close):
            close()

    @abstractmethod
    def url(self, endpoint: Endpoint, *, secrets: bool = False) -> str:
        """The address a user would paste; with ``secrets=False`` passwords are masked."""

    def env(self, endpoint: Endpoint) -> dict[str, str]:
        """Variables to export so the production team's code reaches this service."""
        return {self.env_names[0]: self.url(endpoint, secrets=True)}

    def server_version(self, endpoint: Endpoint) -> str | None:
        """The running server's version, recorded with each run; None when unknown."""
        return None

    # -- production (omnilab doctor, promotion) --------------------------------------

    @classmethod
    def production_url(cls, settings: Settings) -> str | None:
        """Where production's server of this kind is (from the settings), or None when
        omnilab knows of none."""
        return None

    @classmethod
    def production_problem(cls, settings: Settings) -> str | None:
        """Why production's server does not answer, or None when it does. The default
        connects to its TCP port; services that can say more (an HTTP health path, a
        ping) do."""
        url = cls.production_url(settings)
        if url is None:
            return None
        return tcp_problem(url, next(iter(cls.production_ports.values()), 0))


def tcp_problem(url: str, default_port: int) -> str | None:
    """Why nothing accepts a connection at ``url``'s host and port, or None."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def http_problem(url: str, path: str, headers: dict[str, str] | None = None) -> str | None:
    """Why ``url`` + ``path`` gives no HTTP answer (any status counts), or None."""
    import httpx

    try:
        httpx.get(url.rstrip("/") + path, headers=headers or {}, timeout=3)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__
    return None
