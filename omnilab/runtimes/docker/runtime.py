"""The docker runtime: one container per service, on a network of the stack's own.

Containers are named ``<service>-exp-<short stack id>`` and answer on the stack's
network under OmniMind's host names (``redis-exp``, ``postgres-exp``...). Ports are
published on 127.0.0.1 only. Every container, network and volume carries labels
(:mod:`omnilab.runtimes.docker.labels`) that name its stack and owner: teardown, the reaper and
``omnilab gc`` find them by label, so nothing depends on this process's memory.

Data lives on a tmpfs (or, with ``OMNILAB_DOCKER_DATA=volume``, a named volume per
service), gone at teardown; a kept stack (``--keep`` of a run) bind-mounts
``data/experiments/<run id>/<service>/`` instead, so its data survives the containers.
Like the local runtime, this one knows nothing about any particular service: it runs the
:class:`~omnilab.services.base.ContainerPlan` each service hands it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.errors import (
    OmnilabError,
    RuntimeUnavailable,
    ServiceUnavailable,
    StackStartError,
    UsageError,
)
from omnilab.gpu import Gpu, decide, host_gpus
from omnilab.resources import Bounds, Resources
from omnilab.runtimes.base import Leftover, RunningService, Runtime
from omnilab.runtimes.docker import bounds as docker_bounds
from omnilab.runtimes.docker import engine, labels
from omnilab.runtimes.docker.images.resolve import ContainerRecipe, resolve_image
from omnilab.runtimes.state import data_in_run_dir
from omnilab.services.base import Credentials, Endpoint, Service

if TYPE_CHECKING:
    import docker

    from omnilab.checks import Check
    from omnilab.config import Settings
    from omnilab.progress import Reporter
    from omnilab.runtimes.state import StackState

#: Seconds a container gets to stop cleanly when its data is kept, before it is killed.
STOP_GRACE = 10
#: Messages of an engine that could not publish a port someone else holds.
_PORT_TAKEN = ("port is already allocated", "address already in use")


def container_name(service: str, stack_id: str) -> str:
    return f"{service}-exp-{stack_id[:8]}"


def network_name(stack_id: str) -> str:
    return f"omnilab-{stack_id[:12]}"


def data_placement() -> str:
    """Where a stack's data lives when it is not kept (``OMNILAB_DOCKER_DATA``).

    ``tmpfs`` (the default): in memory, gone with the container; the fastest start
    (PostgreSQL writes a thousand files before it answers) and nothing to leak.
    ``volume``: a named volume per service, on disk, for data larger than memory.
    """
    value = os.environ.get("OMNILAB_DOCKER_DATA", "tmpfs").strip().lower() or "tmpfs"
    if value not in ("tmpfs", "volume"):
        raise UsageError(f"OMNILAB_DOCKER_DATA={value!r}: choose tmpfs or volume")
    return value


def network_env(services: Mapping[str, RunningService]) -> dict[str, str]:
    """The variables code *inside* a stack's network uses (``ENVIRONMENT=docker_experiments``):
    OmniMind's host names (``redis-exp:6379``...) and the services' own ports."""
    env = {"ENVIRONMENT": "docker_experiments"}
    for running in services.values():
        service = running.service
        inside = running.endpoint.with_host(service.alias, dict(service.native_ports))
        env.update(service.env(inside))
    return env


class DockerRuntime(Runtime):
    name: ClassVar[str] = "docker"
    #: ``auto`` prefers Docker wherever an engine answers and the images are there.
    auto_preference: ClassVar[int] = 10
    available_when: ClassVar[str] = "an engine answers and images are there"
    #: A probe from the host costs a failed connection to the published port (about a
    #: millisecond); polling often saves up to a quarter second per start.
    poll_max: ClassVar[float] = 0.05
    enforces_bounds: ClassVar[bool] = True

    def __init__(self, settings: Settings, reporter: Reporter) -> None:
        super().__init__(settings, reporter)
        self._gpus: list[Gpu] = []
        self._gpu_support: engine.GpuSupport | None = None
        self._engine_info: dict[str, Any] | None = None

    @property
    def client(self) -> docker.DockerClient:
        return engine.connect()

    def engine_info(self) -> dict[str, Any]:
        """The engine's ``/info`` (GPU support, the host's memory and CPUs), asked once."""
        if self._engine_info is None:
            self._engine_info = self.client.info()
        return self._engine_info

    # -- decided before anything starts ----------------------------------------------

    @classmethod
    def doctor_checks(cls, settings: Settings) -> list[Check]:
        from omnilab.runtimes.docker import doctor

        return doctor.checks(settings)

    @classmethod
    def collect_leftovers(
        cls, settings: Settings, *, dry_run: bool
    ) -> tuple[list[Leftover], str | None]:
        from omnilab.runtimes.docker import leftovers

        return leftovers.collect(dry_run=dry_run)

    @classmethod
    def unavailable_reason(cls, settings: Settings, services: Sequence[Service]) -> str | None:
        try:
            client = engine.connect()
            for service in services:
                resolve_image(client, service, None)
        except (RuntimeUnavailable, ServiceUnavailable) as exc:
            return str(exc)
        return None

    def prepare(self, services: Sequence[Service]) -> dict[str, ContainerRecipe]:
        data_placement()  # a bad OMNILAB_DOCKER_DATA is refused before anything starts
        labels.extra_labels()  # likewise a bad OMNILAB_LABELS
        client = self.client
        recipes: dict[str, ContainerRecipe] = {}
        for service in services:
            recipe = resolve_image(client, service, self.reporter)
            assert recipe is not None
            recipes[service.name] = recipe
        return recipes

    def gpus(self, policy: bool | str) -> list[Gpu]:
        if policy is False:
            return []
        support = engine.gpu_support(self.engine_info())
        self._gpu_support = support
        if support.kind is None:
            reason = support.detail
        else:
            found = host_gpus()
            reason = "" if found else "no NVIDIA GPU is visible on this host (nvidia-smi)"
        if reason:
            if policy is True:
                raise UsageError(f"gpu=True, but {reason}; use gpu='auto' to fall back to CPU")
            self.no_gpu_reason = reason  # the stack says it, once, with what it does
            return decide(policy, [], "the Docker engine")
        self._gpus = decide(policy, found, "the Docker engine")
        return self._gpus

    def gpu_requests(self, gpus: list[Gpu]) -> list[Any]:
        """Device requests that hand ``gpus`` to a container (an experiment's own)."""
        support = self._gpu_support or engine.GpuSupport(None, "")
        return engine.device_requests(support, gpus, self.settings.cuda_visible_devices)

    # -- one stack ----------------------------------------------------------------------

    def describe_stack(self, stack_id: str, services: Sequence[Service]) -> list[str]:
        """The stack's network and each service's alias and native ports in it: what
        another container on that network connects to."""
        inside = " ".join(
            f"{s.alias}:{','.join(map(str, s.native_ports.values()))}" for s in services
        )
        return [f"inside its docker network {network_name(stack_id)}: {inside}"]

    def open_stack(self, state: StackState) -> None:
        import docker.errors

        client = self.client
        name = network_name(state.id)
        try:
            client.networks.create(
                name, driver="bridge", labels=labels.stack_labels(state), check_duplicate=True
            )
        except docker.errors.APIError as exc:
            raise StackStartError(
                f"docker: could not create the stack's network {name} ({exc.explanation}); "
                "`omnilab gc` removes networks left by dead stacks"
            ) from None
        state.extra["network"] = name
        if state.workdir:
            # Reopening a stack whose data was retained: its folder is mounted again as is.
            if not Path(state.workdir).is_dir():
                raise StackStartError(f"docker: the stack's data folder {state.workdir} is gone")
        elif data_in_run_dir(state) and state.run_id:
            workdir = Path(self.settings.data_dir).resolve() / state.run_id
            workdir.mkdir(parents=True, exist_ok=False)
            state.workdir = str(workdir)
            state.extra.setdefault("log_dir", str(workdir / "logs"))
        state.save()

    def launch(
        self,
        state: StackState,
        service: Service,
        recipe: ContainerRecipe,
        credentials: Credentials,
        ports: dict[str, int],
    ) -> tuple[Endpoint, dict[str, Any], str]:
        import docker.errors

        client = self.client
        plan = service.container_plan(credentials)
        name = container_name(service.name, state.id)
        own_labels = labels.stack_labels(state, service.name)
        handle: dict[str, Any] = {
            "kind": "container",
            "name": name,
            "ports": dict(ports),
            "image": recipe.image,
            "image_digest": recipe.digest,
        }
        if recipe.replaces:
            handle["replaces"] = recipe.replaces
        if state.extra.get("log_dir"):
            handle["log"] = str(Path(state.extra["log_dir"]) / f"{service.name}.log")
        gpus = self._gpus if plan.takes_gpu else []
        support = self._gpu_support or engine.GpuSupport(None, "")
        requests = engine.device_requests(support, gpus, self.settings.cuda_visible_devices)
        if requests:
            handle["gpus"] = [g.to_dict() for g in gpus]
        network = state.extra["network"]
        limits = self._bound(state, service, plan, handle)  # before _mounts: the tmpfs size
        try:
            container = client.containers.create(
                recipe.image,
                command=plan.command,
                name=name,
                hostname=service.alias,
                environment=plan.env,
                labels=own_labels,
                mounts=self._mounts(state, service, plan, handle),
                **limits,
                ports={
                    f"{native}/tcp": ("127.0.0.1", ports[role])
                    for role, native in service.native_ports.items()
                },
                network=network,
                networking_config={
                    network: client.api.create_endpoint_config(aliases=[service.alias])
                },
                device_requests=requests or None,
                # No docker-init: it would keep the server's full command line (Redis's
                # --requirepass) visible to every user's `ps`; the servers handle signals
                # and reap their children as PID 1 themselves.
                security_opt=["no-new-privileges"],
                detach=True,
            )
        except docker.errors.APIError as exc:
            raise StackStartError(
                f"{service.name}: the engine could not create its container "
                f"({exc.explanation or exc})"
            ) from None
        handle["id"] = container.id
        try:
            container.start()
        except Exception as exc:
            # Not raised here: start_service records the handle first (so teardown
            # finds the container), then failure() reports this and a lost port race
            # is retried on other ports.
            text = getattr(exc, "explanation", None) or str(exc)
            handle["start_error"] = f"the engine could not start it: {text}"
            handle["port_conflict"] = any(m in str(text) for m in _PORT_TAKEN)
        endpoint = Endpoint(
            service=service.name, ports=dict(ports), credentials=credentials, contained=True
        )
        return endpoint, handle, recipe.source

    def reopen_stack(self, state: StackState) -> None:
        # open_stack mounts a retained stack's folder again when state.workdir is set.
        self.open_stack(state)

    def relaunch(
        self,
        state: StackState,
        service: Service,
        recipe: ContainerRecipe,
        credentials: Credentials,
        ports: dict[str, int],
    ) -> tuple[Endpoint, dict[str, Any], str]:
        # A new container on the retained data folder: the images start on existing data
        # without initialising it, with the credentials it was written under.
        return self.launch(state, service, recipe, credentials, ports)

    def _mounts(
        self, state: StackState, service: Service, plan: Any, handle: dict[str, Any]
    ) -> list[Any]:
        """Where the service's data goes: the retained (or kept) stack's folder, a
        labelled volume, or a tmpfs; and the volume every stack shares, when the plan has
        one."""
        from docker.types import Mount

        client = self.client
        mounts: list[Mount] = []
        if plan.data_path:
            if state.workdir:
                host_dir = Path(state.workdir) / service.name
                host_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                mounts.append(Mount(plan.data_path, str(host_dir), type="bind"))
                handle["data_dir"] = str(host_dir)
            elif data_placement() == "volume":
                volume = client.volumes.create(
                    name=f"{handle['name']}-data",
                    labels=labels.stack_labels(state, service.name),
                )
                mounts.append(Mount(plan.data_path, volume.name, type="volume"))
                handle["volume"] = volume.name
            else:
                size = handle.get("tmpfs_size")
                mounts.append(Mount(plan.data_path, None, type="tmpfs", tmpfs_size=size))
        if plan.shared_path:
            shared = f"omnilab-shared-{service.name}"
            with contextlib.suppress(Exception):  # exists already: shared on purpose
                client.volumes.create(name=shared, labels=labels.shared_labels(service.name))
            mounts.append(Mount(plan.shared_path, shared, type="volume"))
        return mounts

    def _container(self, handle: dict[str, Any]) -> Any | None:
        import docker.errors

        try:
            return self.client.containers.get(handle.get("id") or handle["name"])
        except docker.errors.NotFound:
            return None

    def failure(self, handle: dict[str, Any]) -> str | None:
        if handle.get("start_error"):
            return str(handle["start_error"])
        container = self._container(handle)
        if container is None:
            return "its container is gone"
        status = container.attrs.get("State", {})
        if container.status in ("exited", "dead"):
            why = ""
            recorded = handle.get("bounds") or {}
            if status.get("OOMKilled"):
                why = f" (out of memory: killed at its memory bound, {recorded.get('memory')})"
            elif recorded.get("disk") and docker_bounds.out_of_space(container):
                why = f" (out of space: its disk bound is {recorded['disk']})"
            return f"its container exited with status {status.get('ExitCode')}{why}"
        return None

    def port_in_use_by_other(self, handle: dict[str, Any]) -> bool:
        return bool(handle.get("port_conflict"))

    def logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        container = self._container(handle)
        if container is None:
            return "    (no log: the container is gone)"
        text = container.logs(tail=lines).decode(errors="replace").strip()
        return "\n".join(f"    {line}" for line in text.splitlines()) or "    (empty log)"

    def stop(self, handle: dict[str, Any]) -> None:
        container = self._container(handle)
        if container is not None:
            self._save_log(container, handle.get("log"))
            _remove_container(container, graceful=False)
        if handle.get("volume"):
            self._remove_volume(handle["volume"])

    def destroy(self, state: StackState, *, remove_data: bool = True) -> list[str]:
        import docker.errors
        import requests

        client = self.client  # RuntimeUnavailable, one line, when no engine answers
        try:
            return self._destroy(client, state, remove_data)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise OmnilabError(
                f"docker: stack {state.id[:12]} could not be removed entirely "
                f"({getattr(exc, 'explanation', None) or exc}); `omnilab gc` removes what "
                "is left once the engine answers"
            ) from None

    def _destroy(self, client: Any, state: StackState, remove_data: bool) -> list[str]:
        import docker.errors

        selector = labels.label_filter({labels.STACK: state.id})
        removed: list[str] = []
        log_dir = state.extra.get("log_dir")
        for _ in range(3):  # a container created while we were removing: look again
            containers = engine.containers(client, selector)

            def remove(container: Any) -> str:
                name = engine.container_name(container)
                service = engine.object_labels(container).get(labels.SERVICE, name)
                if log_dir:
                    self._save_log(container, str(Path(log_dir) / f"{service}.log"))
                _remove_container(container, graceful=not remove_data)
                return f"container {name}"

            if containers:
                with ThreadPoolExecutor(max_workers=len(containers)) as pool:
                    removed += list(pool.map(remove, containers))
            busy = False
            for network in client.networks.list(filters=selector):
                try:
                    network.remove()
                    removed.append(f"network {network.name}")
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError:
                    busy = True  # still has an endpoint: a late container
            if not busy:
                break
        if remove_data:
            for volume in client.volumes.list(filters=selector):
                if self._remove_volume(volume.name):
                    removed.append(f"volume {volume.name}")
            if state.workdir and Path(state.workdir).exists():
                self._remove_host_dir(Path(state.workdir), state)
                removed.append(f"directory {state.workdir}")
        return removed

    # -- resource bounds (omnilab.resources; the engine's side in bounds.py) -------------

    def bounds(
        self, resources: Resources, defaults: dict[str, Resources | None]
    ) -> dict[str, Bounds]:
        if not defaults:
            return {}
        return docker_bounds.resolve(self.engine_info(), resources, defaults)

    def bounds_hit(self, state: StackState) -> list[str]:
        return docker_bounds.hits(
            self.client, state.id, state.created_at, state.services, self._container
        )

    def _bound(
        self, state: StackState, service: Service, plan: Any, handle: dict[str, Any]
    ) -> dict[str, Any]:
        """The container's limits, from the bounds the stack resolved (the defaults for a
        stack that resolved none); records what applied in ``handle["bounds"]`` and the
        data tmpfs's size in ``handle["tmpfs_size"]`` for :meth:`_mounts`."""
        given = (state.extra.get("bounds") or {}).get(service.name)
        if given is not None:
            bounds = Bounds.from_dict(given)
        else:
            bounds = self.bounds(Resources(), {service.name: service.default_resources})[
                service.name
            ]
        disk_note: str | None = None
        if not plan.data_path:
            disk_note = "disk: not bounded (the service keeps no data folder)"
        elif state.workdir:
            disk_note = "disk: not bounded (data in the kept stack's folder on the host)"
        elif data_placement() == "volume":
            disk_note = "disk: not bounded (data on a named volume: OMNILAB_DOCKER_DATA=volume)"
        tmpfs = bounds.disk if disk_note is None else None
        if tmpfs is not None:
            handle["tmpfs_size"] = tmpfs
        recorded = docker_bounds.record(bounds, disk_note=disk_note)
        if plan.shared_path:
            recorded.setdefault("notes", []).append(
                f"{plan.shared_path}: the volume all stacks share is not bounded"
            )
        handle["bounds"] = recorded
        return docker_bounds.host_config(bounds)

    # -- helpers ------------------------------------------------------------------------

    def _save_log(self, container: Any, path: str | None) -> None:
        """Keep what a container wrote with the run's logs before it disappears."""
        if not path:
            return
        with contextlib.suppress(Exception):
            text = container.logs()
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:
                fh.write(text)

    def _remove_volume(self, name: str) -> bool:
        import docker.errors

        for _ in range(50):
            try:
                self.client.volumes.get(name).remove(force=True)
                return True
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError:
                time.sleep(0.1)  # still in use by a container being removed
        return False

    def _remove_host_dir(self, path: Path, state: StackState) -> None:
        """Remove a retained (or kept) stack's data; files a container wrote as its own
        user may need root, so what this process cannot remove is removed from inside a
        container."""
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        image = next((h.get("image") for h in state.services.values() if h.get("image")), None)
        if image is None:
            return
        with contextlib.suppress(Exception):
            self.client.containers.run(
                image,
                entrypoint=["rm", "-rf", f"/target/{path.name}"],
                mounts=[_bind(path.parent, "/target")],
                labels=labels.stack_labels(state),
                remove=True,
                network_mode="none",
            )
        shutil.rmtree(path, ignore_errors=True)


def _bind(source: Path, target: str) -> Any:
    from docker.types import Mount

    return Mount(target, str(source), type="bind")


def _remove_container(container: Any, *, graceful: bool) -> None:
    import docker.errors

    try:
        if graceful:
            container.stop(timeout=STOP_GRACE)
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise
        for _ in range(100):  # someone else (the reaper, `stack down`) is removing it
            try:
                container.client.api.inspect_container(container.id)
            except docker.errors.NotFound:
                return
            time.sleep(0.1)
