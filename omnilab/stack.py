"""A stack: the private services of one run (or of an interactive session).

``Stack`` decides everything that can fail cheaply first (runtime, binaries, GPUs) so
that bad input never leaves anything half-started; then it starts the services in
parallel, hands out connected clients, and removes everything at the end. A watcher
process (see :mod:`omnilab.reaper`) removes the stack if its owner dies first. A stack
with no services starts nothing, so it has neither.

What can become of a stack at its end, and the one name each has:

- **removed**: the default; servers and data go.
- **keep** (``Stack(keep=True)``, ``omnilab.stack(keep=True)``, ``--keep``,
  ``StackState.keep``): the stack is left *running* for its user, until ``omnilab stack
  down``. "Keep" means this and nothing else in the code.
- **retain** (``Stack(retain_data=True)``, for runs of experiments that declare
  ``promotes``): the servers *stop* and their data stays on disk with what it takes to
  start them again, a :class:`~omnilab.retained_stack.RetainedStack` at
  :attr:`Stack.retained_path`, until the run is promoted, discarded or past
  ``OMNILAB_RETENTION_DAYS`` (:mod:`omnilab.promote.retention`). What users read (the
  CLI, the README, ``runs.stack->'data'->>'state'``) calls it the run's *kept data*.
- **reopen** (:meth:`Stack.reopen`): a retained stack started again on its data; the
  new stack knows what it was reopened from and retains the data again at its end.

Keys of ``StackState.extra`` written by a stack, persisted in state files and read by
the runtimes and the reaper: ``data_in_run_dir`` (the stack's folder goes under
``data/experiments/<run id>/`` rather than a temporary one: kept or retained; state files
written before it was named so say ``keep_data``, and :func:`data_in_run_dir` reads
both), ``retain_data`` (whoever tears the stack down stops it and leaves the data),
``reopened_from`` (the handles of the retained stack a reopened stack runs on).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from omnilab import reaper, retained_stack
from omnilab import resources as bounds_of
from omnilab.config import Settings, get_settings
from omnilab.errors import OmnilabError, UsageError
from omnilab.gpu import Gpu, GpuPolicy
from omnilab.progress import Reporter, default_reporter
from omnilab.resources import Bounds, Resources
from omnilab.runtimes import RunningService, Runtime, select_runtime
from omnilab.runtimes.state import StackState, write_env_file
from omnilab.services.base import Service

if TYPE_CHECKING:
    import ollama
    import psycopg
    import qdrant_client
    import redis


def _check_services(services: Sequence[Any]) -> list[Service]:
    checked: list[Service] = []
    seen: set[str] = set()
    for item in services:
        if isinstance(item, type) and issubclass(item, Service):
            item = item()  # Redis instead of Redis(): forgive it
        if not isinstance(item, Service):
            from omnilab.services import service_names

            raise UsageError(
                f"{item!r} is not a service; use an instance of one "
                f"({', '.join(service_names())}), such as Redis()"
            )
        if item.name in seen:
            raise UsageError(f"{item.name} is declared twice in the same stack")
        seen.add(item.name)
        checked.append(item)
    return checked


class Stack:
    """Services started together, isolated from every other stack and from production."""

    def __init__(
        self,
        *services: Service,
        runtime: str | None = None,
        keep: bool = False,
        gpu: GpuPolicy = "auto",
        run_id: str | None = None,
        log_dir: Path | None = None,
        reporter: Reporter | None = None,
        settings: Settings | None = None,
        retain_data: bool = False,
        resources: Resources | None = None,
    ) -> None:
        """``retain_data=True`` stops the servers at the end but retains their data (under
        ``data/experiments/<run id>/``) for :meth:`reopen`: runs of experiments that
        declare ``promotes`` wait there for ``omnilab promote``.

        ``resources`` bounds each service's container (:class:`~omnilab.resources.Resources`);
        None: the defaults. Bounds are resolved in :meth:`prepare` (a bad one refused before
        anything starts) and kept in :attr:`bounds`.
        """
        self.settings = settings or get_settings()
        self.requested_runtime = runtime or self.settings.runtime
        self.service_specs = _check_services(services)
        self.keep = keep
        self.gpu_policy = gpu
        self.run_id = run_id
        self.id = run_id or uuid.uuid4().hex
        self.log_dir = log_dir
        self.retain_data = retain_data
        self.resources = bounds_of.check(
            resources, [s.name for s in self.service_specs], "the stack"
        )
        #: The bounds each service's container gets (empty where the runtime enforces none).
        self.bounds: dict[str, Bounds] = {}
        #: Where the data stayed once a stack with ``retain_data`` has closed.
        self.retained_path: Path | None = None
        #: The retained stack this one was reopened from (:meth:`reopen`).
        self._reopened_from: retained_stack.RetainedStack | None = None
        self.reporter = reporter or default_reporter()
        self.runtime: Runtime | None = None
        self.gpus: list[Gpu] = []
        self.services: dict[str, RunningService] = {}
        self.timings: dict[str, float] = {}
        self._recipes: dict[str, Any] = {}
        self._state: StackState | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._closed = False
        self._empty = False  # started with nothing to start (see _holds_nothing)

    # -- lifecycle ------------------------------------------------------------------

    def prepare(self) -> Stack:
        """Decide runtime, binaries and GPUs; raise before anything has started."""
        if self.runtime is not None:
            return self
        runtime = select_runtime(
            self.requested_runtime, self.settings, self.reporter, self.service_specs
        )
        self._recipes = runtime.prepare(self.service_specs)
        self.bounds = runtime.bounds(
            self.resources, {s.name: s.default_resources for s in self.service_specs}
        )
        if not runtime.enforces_bounds and not self.resources.is_empty():
            self.reporter.note(f"resources: not enforced: {runtime.bounds_note}")
        self.gpus = runtime.gpus(self.gpu_policy)
        if self.gpus:
            names = ", ".join(f"{g.index}:{g.name}" for g in self.gpus)
            self.reporter.note(f"gpu: {names}")
        elif self.gpu_policy == "auto":
            # One line, with the runtime's reason when it has one.
            why = getattr(runtime, "no_gpu_reason", None) or "none available"
            self.reporter.note(f"gpu: {why}; running on CPU")
        self.runtime = runtime
        return self

    def start(self, on_open: Callable[[StackState], None] | None = None) -> Stack:
        """Start every service in parallel and wait until each one answers.

        ``on_open(state)`` is called once the stack's shared resources (its network)
        exist, before the services start: what must join the stack early (an
        experiment's container) starts there, beside the services.
        """
        self.prepare()
        assert self.runtime is not None
        runtime = self.runtime
        began = time.monotonic()
        if self._holds_nothing(on_open):
            self._empty = True
            self.timings["start_s"] = time.monotonic() - began
            return self
        state = StackState.create(
            self.settings.state_dir, self.id, runtime.name, run_id=self.run_id, keep=False
        )
        if self.log_dir is not None:
            state.extra["log_dir"] = str(self.log_dir)
        state.extra["gpus"] = [g.to_dict() for g in self.gpus]
        if self.bounds:
            state.extra["bounds"] = {n: b.to_dict() for n, b in self.bounds.items()}
        # Kept and retained stacks put their data under data/experiments/<run id>/; a
        # retained (or reopened) one is stopped without removing it, by the reaper too.
        reopened = self._reopened_from
        state.extra["data_in_run_dir"] = self.keep or self.retain_data
        state.extra["retain_data"] = self.retain_data or reopened is not None
        if reopened is not None:
            state.workdir = str(reopened.path)
            state.extra["reopened_from"] = {"stack_id": reopened.stack_id, **reopened.services}
            state.save()
        self._state = state
        reaper.spawn(state.path)  # type: ignore[arg-type]
        try:
            if reopened is not None:
                runtime.reopen_stack(state)
            else:
                runtime.open_stack(state)
            if on_open is not None:
                on_open(state)
            self._start_services(runtime, state)
        except BaseException:
            if reopened is not None:
                # The kept data is what the reopen was for: stop what started, keep it.
                self._stop_retaining_data()
            else:
                self._destroy()
            raise
        self.timings["start_s"] = time.monotonic() - began
        return self

    def _holds_nothing(self, on_open: Callable[[StackState], None] | None) -> bool:
        """No service, nothing joining the stack, nothing to keep or retain: then the runtime would
        make only an empty folder (or network) that nothing uses, and a state file and a
        watcher process to remove it. Such a stack (an experiment with no services) is
        left empty: nothing is started, so nothing can be left behind."""
        return (
            not self.service_specs
            and on_open is None
            and not self.keep
            and not self.retain_data
            and self._reopened_from is None
        )

    def _start_services(self, runtime: Runtime, state: StackState) -> None:
        if not self.service_specs:
            return
        errors: list[BaseException] = []
        cancel = threading.Event()

        reopened = self._reopened_from

        def start_one(service: Service) -> RunningService:
            return runtime.start_service(
                state,
                service,
                self._recipes[service.name],
                reopened.credentials(service.name) if reopened else service.new_credentials(),
                cancel=cancel,
                relaunch=reopened is not None,
            )

        pool = ThreadPoolExecutor(max_workers=len(self.service_specs))
        try:
            futures = {pool.submit(start_one, s): s for s in self.service_specs}
            for future, service in futures.items():
                try:
                    self.services[service.name] = future.result()
                except Exception as exc:
                    errors.append(exc)
        except BaseException:
            cancel.set()  # Ctrl-C: the other starts give up at their next readiness poll
            raise
        finally:
            pool.shutdown(wait=True)
        if errors:
            # One clear failure is worth more than several; the first in declaration order.
            raise errors[0]
        state.urls = {name: s.service.url(s.endpoint) for name, s in self.services.items()}
        state.save()

    def bounds_hit(self) -> list[str]:
        """One line per resource bound a service hit (killed at its memory bound, its data
        disk full), naming the service and the bound; checked before a run's teardown."""
        if self._state is None or self.runtime is None or not self.runtime.enforces_bounds:
            return []
        try:
            return self.runtime.bounds_hit(self._state)
        except Exception as exc:  # the run's own outcome matters more than this check
            self.reporter.note(f"warning: could not check the stack's bounds: {exc}")
            return []

    def close(self) -> None:
        """Close clients, then remove the stack (or leave it running with ``keep``)."""
        if self._closed:
            return
        self._closed = True
        self.close_clients()
        if self._empty:
            self.timings["teardown_s"] = 0.0
            self.reporter.stack_removed(self.id, 0.0)
        if self._state is None:
            return
        if self.keep:
            self._keep()
            return
        began = time.monotonic()
        if self.retain_data or self._reopened_from is not None:
            self._stop_retaining_data()
        else:
            self._destroy()
        self.timings["teardown_s"] = time.monotonic() - began

    def close_clients(self) -> None:
        with self._clients_lock:
            for name, client in self._clients.items():
                # Closing a dead connection is not worth failing a teardown.
                with contextlib.suppress(Exception):
                    self.services[name].service.close_client(client)
            self._clients.clear()

    def _destroy(self) -> None:
        state = self._state
        if state is None or self.runtime is None:
            return
        began = time.monotonic()
        self.runtime.destroy(state)
        state.remove()
        self.reporter.stack_removed(self.id, time.monotonic() - began)

    def _stop_retaining_data(self) -> None:
        """Stop the servers, retain their data and what it takes to reopen them."""
        state = self._state
        if state is None or self.runtime is None:
            return
        failures: dict[str, str] = {}
        if self._reopened_from is None:
            for name, running in self.services.items():
                try:
                    running.service.persist(running.endpoint)
                except Exception as exc:  # recorded: promotion refuses data not saved whole
                    failures[name] = f"{type(exc).__name__}: {exc}"
                    self.reporter.note(f"  warning: {name}: its data could not be saved: {exc}")
        self.runtime.destroy(state, remove_data=False)
        if self._reopened_from is None and state.workdir:
            retained_stack.save(state, self.services, failures)
        self.retained_path = Path(state.workdir) if state.workdir else None
        state.remove()

    @classmethod
    def reopen(
        cls,
        path: Path | str,
        *,
        services: Sequence[str] | None = None,
        reporter: Reporter | None = None,
        settings: Settings | None = None,
    ) -> Stack:
        """Start a retained stack again on its data (all its services, or those named).

        Closing it stops the servers and retains the data again; a watcher does the same
        if this process dies.
        """
        retained = retained_stack.RetainedStack.load(path)
        names = list(services) if services is not None else list(retained.services)
        specs = [retained.spec(name) for name in names]
        for name in names:
            reason = retained.unusable(name)
            if reason:
                raise OmnilabError(reason)
        # The bounds the run had (its handles recorded them), not today's defaults: a
        # Redis whose data grew under a raised memory bound must fit again.
        had = {
            name: Bounds.from_dict(info["handle"]["bounds"]).as_resources()
            for name, info in retained.services.items()
            if name in names and (info.get("handle") or {}).get("bounds")
        }
        stack = cls(
            *specs,
            runtime=retained.runtime,
            gpu=False,
            run_id=retained.run_id,
            log_dir=Path(retained.path) / "logs",
            reporter=reporter,
            settings=settings,
            resources=Resources(per_service=had),
        )
        stack._reopened_from = retained
        return stack.start()

    def _keep(self) -> None:
        state = self._state
        assert state is not None
        state.keep = True
        state.save()
        env_path = write_env_file(state, self.env)
        self.reporter.note(f"stack {self.id[:12]} kept running:")
        for name, running in self.services.items():
            self.reporter.note(f"  {name}: {running.service.url(running.endpoint)}")
        self.reporter.note(f"  credentials: source {env_path}")
        self.reporter.note(f"  stop it with: omnilab stack down {self.id[:12]}")

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- using ------------------------------------------------------------------------

    def endpoint(self, name: str) -> Any:
        return self._running(name).endpoint

    def _running(self, name: str) -> RunningService:
        try:
            return self.services[name]
        except KeyError:
            declared = ", ".join(self.services) or "no services"
            raise OmnilabError(
                f"this stack has no {name} service (it has {declared}); "
                f"declare {name.capitalize()}() in its services"
            ) from None

    def client(self, name: str) -> Any:
        """The connected client of service ``name``, created on first use."""
        with self._clients_lock:
            if name not in self._clients:
                running = self._running(name)
                self._clients[name] = running.service.client(running.endpoint)
            return self._clients[name]

    def __getattr__(self, name: str) -> Any:
        """``stack.<service>`` for every service of the stack, plug-ins' included (the
        properties below only type omnilab's own)."""
        specs = self.__dict__.get("service_specs") or []
        if not name.startswith("_") and any(s.name == name for s in specs):
            return self.client(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def qdrant(self) -> qdrant_client.QdrantClient:
        return cast("qdrant_client.QdrantClient", self.client("qdrant"))

    @property
    def redis(self) -> redis.Redis:
        return cast("redis.Redis", self.client("redis"))

    @property
    def postgres(self) -> psycopg.Connection:
        return cast("psycopg.Connection", self.client("postgres"))

    @property
    def ollama(self) -> ollama.Client:
        return cast("ollama.Client", self.client("ollama"))

    @property
    def env(self) -> dict[str, str]:
        """Variables that point code on this host at this stack (with secrets).

        Host-side addresses (127.0.0.1 and the stack's ports). Code running inside a
        docker stack's network uses the aliases instead (``ENVIRONMENT=docker_experiments``).
        """
        env: dict[str, str] = {}
        for running in self.services.values():
            env.update(running.service.env(running.endpoint))
        return env

    @property
    def urls(self) -> dict[str, str]:
        """Service URLs with passwords masked: safe to print or log."""
        return {n: r.service.url(r.endpoint) for n, r in self.services.items()}

    def describe(self) -> dict[str, Any]:
        """What a run record keeps about its stack (no secrets)."""
        described: dict[str, Any] = {
            "id": self.id,
            "runtime": self.runtime.name if self.runtime else None,
            "services": {n: r.describe() for n, r in self.services.items()},
            "gpus": [g.to_dict() for g in self.gpus],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }
        if self.runtime is not None and not self.runtime.enforces_bounds:
            # Each service's "bounds" says what applied; here, that nothing did.
            described["bounds"] = {"enforced": False, "note": self.runtime.bounds_note}
        if self.retained_path is not None:
            described["data"] = {"path": str(self.retained_path)}
        return described

    def _repr_html_(self) -> str:
        from omnilab.notebook.cards import stack_card

        return stack_card(self)

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.service_specs)
        return f"<Stack {self.id[:12]} [{names}] {'running' if self.services else 'stopped'}>"


@contextmanager
def stack(
    *services: Service,
    runtime: str | None = None,
    keep: bool = False,
    gpu: GpuPolicy = "auto",
    reporter: Reporter | None = None,
    resources: Resources | None = None,
) -> Iterator[Stack]:
    """An ad-hoc stack for interactive work::

    with omnilab.stack(Redis(), Postgres()) as s:
        s.redis.set("k", "v")
        s.postgres.execute("select 1")

    ``resources`` bounds its containers as ``Experiment.resources`` does (defaults if None).
    """
    s = Stack(
        *services, runtime=runtime, keep=keep, gpu=gpu, reporter=reporter, resources=resources
    )
    s.start()
    try:
        yield s
    finally:
        s.close()
