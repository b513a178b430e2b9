"""The runtime interface: what the local and docker runtimes both implement.

A runtime knows how to run processes or containers in general, and nothing about any
particular service: it executes the plans a service spec hands it. The shared part of
starting a service (port allocation, retries when a port was taken by someone else in
the meantime, readiness polling with a timeout, the service's one-time setup) lives
here so both runtimes behave the same.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.errors import RuntimeUnavailable, StackStartError
from omnilab.resources import Bounds, Resources
from omnilab.runtimes import ports as port_alloc
from omnilab.services.base import Credentials, Endpoint, Service

if TYPE_CHECKING:
    from omnilab.checks import Check
    from omnilab.config import Settings
    from omnilab.gpu import Gpu, GpuPolicy
    from omnilab.progress import Reporter
    from omnilab.runtimes.state import StackState

#: Attempts to start a service whose port was taken between allocation and bind.
PORT_RETRIES = 3


@dataclass
class RunningService:
    """A service of a stack that answered its readiness check."""

    service: Service
    endpoint: Endpoint
    #: How it runs: binary and origin, embedded mode, or image.
    source: str
    handle: dict[str, Any]
    ready_seconds: float
    version: str | None = None
    moved: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.service.name

    def describe(self) -> dict[str, Any]:
        """What the run record keeps: no secrets."""
        return {
            "source": self.source,
            "version": self.version,
            "url": self.service.url(self.endpoint),
            "ports": dict(self.endpoint.ports),
            "ready_seconds": round(self.ready_seconds, 3),
            # process, embedded (in the experiment's own process), container, external.
            "kind": self.handle.get("kind"),
            **{
                k: v
                for k, v in self.handle.items()
                if k in ("image", "image_digest", "replaces", "gpus", "bounds")
            },
        }


class PortTaken(Exception):
    """The server could not bind its port: someone took it after allocation."""


@dataclass
class Leftover:
    """Something a stack whose owner is gone left behind, for ``omnilab gc``."""

    kind: str  # "stack", or the runtime's own kinds: "container", "network", "volume"
    name: str
    stack: str | None
    why: str
    removed: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Runtime(ABC):
    """Runs the services of stacks. Subclasses: ``LocalRuntime``, ``DockerRuntime``, and
    any registered as a ``runtime`` plug-in (:mod:`omnilab.plugins`)."""

    name: ClassVar[str]
    #: Longest pause between two readiness probes of a starting service.
    poll_max: ClassVar[float] = 0.25
    #: ``--runtime auto`` tries runtimes from the lowest preference up and takes the
    #: first that can run the stack here.
    auto_preference: ClassVar[int] = 100
    #: When ``--runtime auto`` takes this runtime, in a few words for ``--help`` ("an
    #: engine answers and images are there"); empty for one that always can.
    available_when: ClassVar[str] = ""

    # -- what this machine offers (omnilab doctor, omnilab gc) -------------------------

    @classmethod
    def doctor_checks(cls, settings: Settings) -> list[Check]:
        """``omnilab doctor``'s lines about this runtime on this machine."""
        return []

    @classmethod
    def collect_leftovers(
        cls, settings: Settings, *, dry_run: bool
    ) -> tuple[list[Leftover], str | None]:
        """What this runtime's stacks left behind outside their state files (containers,
        networks...), removed unless ``dry_run``; the second value says why the search
        was skipped (an engine that is down), if it was. State files are ``gc``'s own."""
        return [], None

    def __init__(self, settings: Settings, reporter: Reporter) -> None:
        self.settings = settings
        self.reporter = reporter
        #: Set by ``gpus()`` when GPUs were asked for ("auto") and none can be given, with
        #: why: the stack says it in its one GPU line.
        self.no_gpu_reason: str | None = None

    # -- decided before anything starts ----------------------------------------------

    @classmethod
    @abstractmethod
    def unavailable_reason(cls, settings: Settings, services: Sequence[Service]) -> str | None:
        """None when this runtime can run ``services`` here, else a short reason."""

    @abstractmethod
    def prepare(self, services: Sequence[Service]) -> dict[str, Any]:
        """Per service, how it will run. Raises ServiceUnavailable before any start."""

    @abstractmethod
    def gpus(self, policy: GpuPolicy) -> list[Gpu]:
        """The GPUs a stack gets under ``policy``; raises UsageError for True without any."""

    # -- resource bounds (omnilab.resources) --------------------------------------------
    #
    # A runtime that enforces bounds says so (``enforces_bounds``), resolves them before
    # anything starts, applies them in ``launch`` (from ``state.extra["bounds"]``), records
    # what applied in each handle's ``"bounds"``, and tells which bound a failed run hit.
    # One that does not (the local runtime) records nothing: nothing claims a bound that
    # is not enforced.

    #: Whether :meth:`bounds` gives anything: the run record says so either way.
    enforces_bounds: ClassVar[bool] = False
    #: Why this runtime enforces no bound (the run record and a note say it).
    bounds_note: ClassVar[str] = "this runtime enforces no resource bound"

    def bounds(
        self, resources: Resources, defaults: dict[str, Resources | None]
    ) -> dict[str, Bounds]:
        """The bounds of each named container (``defaults``: name -> the service's own
        defaults) under ``resources``; UsageError, nothing started, for one this runtime
        cannot give. Empty where this runtime enforces none."""
        return {}

    def bounds_hit(self, state: StackState) -> list[str]:
        """One line per bound a service of the stack hit (killed at its memory bound, out
        of its disk), naming the service and the bound; empty when none was."""
        return []

    # -- one stack ----------------------------------------------------------------------

    @abstractmethod
    def open_stack(self, state: StackState) -> None:
        """Create what the whole stack shares (work directory, network)."""

    @abstractmethod
    def launch(
        self,
        state: StackState,
        service: Service,
        recipe: Any,
        credentials: Credentials,
        ports: dict[str, int],
    ) -> tuple[Endpoint, dict[str, Any], str]:
        """Start one service without waiting: its endpoint, handle and source line."""

    @abstractmethod
    def failure(self, handle: dict[str, Any]) -> str | None:
        """Why the service is no longer running, or None while it runs."""

    @abstractmethod
    def logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        """The last lines the service wrote, for error messages."""

    def after_ready(self, handle: dict[str, Any]) -> None:
        """Called once the service answers (the local runtime deletes secret files)."""

    @abstractmethod
    def stop(self, handle: dict[str, Any]) -> None:
        """Stop one service and free what it holds."""

    @abstractmethod
    def destroy(self, state: StackState, *, remove_data: bool = True) -> list[str]:
        """Remove everything of a stack, from its state alone; safe to call twice.

        This is the one teardown path: the owner's normal exit, the reaper after the
        owner died, and ``omnilab stack down`` all come through here.
        """

    def describe_stack(self, stack_id: str, services: Sequence[Service]) -> list[str]:
        """Lines ``omnilab stack up`` prints about a stack left running, after its
        variables: how to reach it from inside this runtime (the docker network's name
        and aliases). None by default: the variables say it all."""
        return []

    # -- retained stacks ------------------------------------------------------------------
    #
    # A stack whose data is retained (the run's results wait for `omnilab promote`) is
    # stopped with ``destroy(state, remove_data=False)``; later, a new StackState pointing
    # at the same data (``state.workdir``, and the retained stack's handles in
    # ``state.extra["reopened_from"]``)
    # is reopened with these two methods, through the shared :meth:`start_service`
    # (``relaunch=True``), with the credentials the stack had.

    def reopen_stack(self, state: StackState) -> None:
        """Make a retained stack's shared resources usable again (work directory, network).

        ``state.workdir`` is the retained stack's directory;
        ``state.extra["reopened_from"]`` holds the descriptor saved when it stopped
        (service handles included).
        """
        raise RuntimeUnavailable(f"the {self.name} runtime cannot reopen a kept stack yet")

    def relaunch(
        self,
        state: StackState,
        service: Service,
        recipe: Any,
        credentials: Credentials,
        ports: dict[str, int],
    ) -> tuple[Endpoint, dict[str, Any], str]:
        """Like :meth:`launch`, on the data the service kept: no initialisation (no
        ``initdb``), nothing wiped, the same credentials as when the data was written."""
        raise RuntimeUnavailable(f"the {self.name} runtime cannot reopen a kept stack yet")

    def serves_its_ports(self, handle: dict[str, Any]) -> bool:
        """Whether the answer to a readiness probe came from this service's own server,
        not from another process that took its port first (that server's start then
        fails, and :meth:`wait_ready` starts it again on fresh ports). True where the
        runtime cannot tell or the port cannot be taken by another (a container's
        published port is bound by the engine before the server starts)."""
        return True

    def port_in_use_by_other(self, handle: dict[str, Any]) -> bool:
        """After a failed start: did the server lose a race for its port?

        The other process may have let the port go again by the time we look, so the
        server's own complaint in its log counts too.
        """
        if any(not port_alloc.is_free(p) for p in handle.get("ports", {}).values()):
            return True
        return "address already in use" in self.logs(handle).lower()

    # -- shared start logic -------------------------------------------------------------

    def start_service(
        self,
        state: StackState,
        service: Service,
        recipe: Any,
        credentials: Credentials,
        cancel: threading.Event | None = None,
        *,
        relaunch: bool = False,
    ) -> RunningService:
        """Launch (or relaunch on kept data), wait until ready, run the one-time setup."""
        launch = self.relaunch if relaunch else self.launch
        avoid: set[int] = set()
        for attempt in range(PORT_RETRIES):
            wanted = self.wanted_ports(service, recipe)
            alloc = port_alloc.allocate(wanted, avoid=avoid) if wanted else None
            ports = alloc.ports if alloc else {}
            began = time.monotonic()
            endpoint, handle, source = launch(state, service, recipe, credentials, ports)
            state.add_service(service.name, handle)
            if attempt == 0:
                self.reporter.service_starting(service.name, source)
            try:
                self.wait_ready(service, endpoint, handle, cancel)
                self.after_ready(handle)
                service.after_ready(endpoint)
            except PortTaken:
                self.stop(handle)
                avoid.update(ports.values())
                if alloc:
                    alloc.release()
                continue
            except BaseException:
                self.stop(handle)
                if alloc:
                    alloc.release()
                raise
            if alloc:
                # The server holds the port now; the in-process reservation can go.
                alloc.release()
                for role, busy in alloc.moved.items():
                    self.reporter.note(
                        f"  {service.name}: port {busy} is busy; using {ports[role]} instead"
                    )
            running = RunningService(
                service=service,
                endpoint=endpoint,
                source=source,
                handle=handle,
                ready_seconds=time.monotonic() - began,
                moved=dict(alloc.moved) if alloc else {},
            )
            try:
                running.version = service.server_version(endpoint)
            except Exception:
                running.version = getattr(recipe, "version", None)
            if handle.get("replaces"):
                # Another version than the pinned one: never silently.
                self.reporter.note(
                    f"  {service.name}: {running.version or 'unknown version'} from "
                    f"{handle.get('image')} (built locally) in place of the pinned "
                    f"{handle['replaces']}"
                )
            self.reporter.service_ready(service.name, service.url(endpoint), running.ready_seconds)
            return running
        raise StackStartError(
            f"{service.name}: could not bind a port after {PORT_RETRIES} attempts "
            "(other processes keep taking them)"
        )

    def wanted_ports(self, service: Service, recipe: Any) -> dict[str, int]:
        """Preferred host ports for ``service`` under this runtime."""
        return dict(service.stack_ports)

    def wait_ready(
        self,
        service: Service,
        endpoint: Endpoint,
        handle: dict[str, Any],
        cancel: threading.Event | None = None,
    ) -> None:
        timeout = self.settings.ready_timeout
        deadline = time.monotonic() + timeout
        delay = 0.01
        last: BaseException | None = None
        while True:
            if cancel is not None and cancel.is_set():
                raise StackStartError(f"{service.name}: start cancelled")
            reason = self.failure(handle)
            if reason is not None:
                if self.port_in_use_by_other(handle):
                    raise PortTaken(service.name)
                raise StackStartError(
                    f"{service.name} stopped while starting ({reason}); last log lines:\n"
                    + self.logs(handle)
                )
            try:
                service.probe(endpoint)
                if self.serves_its_ports(handle):
                    return
                last = PortTaken(f"another process answers on {service.name}'s port")
            except Exception as exc:  # any failure to answer means "not ready yet"
                last = exc
            if time.monotonic() > deadline:
                raise StackStartError(
                    f"{service.name} did not become ready within {timeout:.0f}s "
                    f"({type(last).__name__}: {last}); last log lines:\n" + self.logs(handle)
                )
            time.sleep(delay)
            delay = min(delay * 1.5, self.poll_max)
