"""The Docker engine, as omnilab sees it: can we reach it, which images does it have,
can it give containers GPUs.

Everything here is asked *before* a stack starts, so that an engine that does not
answer, a missing image or a GPU request the engine cannot honour is a one-line error
with nothing started. Clients are cached per ``DOCKER_HOST``: ``select_runtime`` and
the runtime itself then share one connection.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab.errors import RuntimeUnavailable

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image
    from docker.types import DeviceRequest

    from omnilab.gpu import Gpu

#: Seconds an engine gets to answer a ping; an engine that does not answer in that time
#: is as good as absent for deciding where a stack runs.
PING_TIMEOUT = 5.0
#: Seconds for ordinary API calls (create, start, remove). Builds and pulls stream and
#: get no limit.
API_TIMEOUT = 120.0
#: Where CDI specs live by default (the NVIDIA Container Toolkit writes them there).
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")

_lock = threading.Lock()
_clients: dict[tuple[str, ...], docker.DockerClient] = {}
_pullable: dict[str, str | None] = {}


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _why(exc: BaseException) -> str:
    """The root cause of a failed connection, in a few words."""
    text = str(exc)
    for needle, words in (
        ("No such file or directory", "no such socket"),
        ("FileNotFoundError", "no such socket"),
        ("Connection refused", "connection refused"),
        ("Permission denied", "permission denied: is your user in the docker group?"),
        ("PermissionError", "permission denied: is your user in the docker group?"),
        ("timed out", "timed out"),
        ("Name or service not known", "unknown host"),
    ):
        if needle in text:
            return words
    return text.splitlines()[0][:200] if text else type(exc).__name__


def connect() -> docker.DockerClient:
    """A client for the engine at ``DOCKER_HOST``; RuntimeUnavailable if none answers."""
    key = tuple(
        os.environ.get(v, "") for v in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
    )
    with _lock:
        client = _clients.get(key)
    if client is not None:
        return client
    try:
        import docker
    except ImportError:
        raise RuntimeUnavailable("the `docker` Python package is not installed") from None
    try:
        # The version is negotiated with a short timeout, so a dead socket or a host that
        # does not answer is known within seconds.
        probe = docker.from_env(timeout=int(PING_TIMEOUT))
        probe.ping()
        version = probe.api.api_version
        probe.close()
        client = docker.from_env(timeout=int(API_TIMEOUT), version=version)
    except Exception as exc:
        raise RuntimeUnavailable(
            f"no Docker engine answers at {engine_address()} ({_why(exc)})"
        ) from None
    with _lock:
        _clients[key] = client
    return client


def unreachable_reason() -> str | None:
    try:
        connect()
    except RuntimeUnavailable as exc:
        return str(exc)
    return None


def containers(client: docker.DockerClient, selector: dict[str, Any]) -> list[Any]:
    """Containers matching ``selector``, running or not, from one listing call.

    Sparse on purpose: a full listing inspects each container afterwards, and fails
    when one disappears in between (a teardown running at the same time).
    """
    return client.containers.list(all=True, filters=selector, sparse=True)


def container_name(container: Any) -> str:
    names = container.attrs.get("Names") or [container.attrs.get("Name") or container.id[:12]]
    return str(names[0]).lstrip("/")


def object_labels(obj: Any) -> dict[str, str]:
    """Labels of a container (sparse or full), network or volume."""
    attrs = obj.attrs
    found = attrs.get("Labels")
    if found is None:
        found = (attrs.get("Config") or {}).get("Labels")
    return dict(found or {})


# -- images --------------------------------------------------------------------------


def local_image(client: docker.DockerClient, tag: str) -> Image | None:
    """The image ``tag`` if this engine has it, else None."""
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code == 404:
            return None
        if exc.status_code == 400:  # an OMNILAB_IMAGE_* value that is no image reference
            from omnilab.errors import UsageError

            raise UsageError(
                f"{tag!r} is not a valid image reference ({exc.explanation or exc})"
            ) from None
        raise


def pull_problem(client: docker.DockerClient, tag: str) -> str | None:
    """None when a registry can give ``tag``, else why not (asked once per process)."""
    if tag in _pullable:
        return _pullable[tag]
    if os.environ.get("OMNILAB_PULL", "missing").strip().lower() == "never":
        problem: str | None = "pulling is off (OMNILAB_PULL=never)"
    else:
        try:
            client.images.get_registry_data(tag)
            problem = None
        except Exception as exc:
            problem = _registry_why(exc)
    _pullable[tag] = problem
    return problem


def _registry_why(exc: BaseException) -> str:
    text = str(exc)
    if "no such host" in text or "dial tcp" in text or "timeout" in text.lower():
        return "no registry answers"
    if "not found" in text or "manifest unknown" in text or "denied" in text:
        return "the registry does not have it"
    return _why(exc)


def image_id(image: Image) -> str:
    """The image's id (``sha256:...``): docker's types allow None for any object's id, but
    an image the engine describes always has one."""
    return str(image.attrs["Id"])


def image_digest(image: Image) -> str:
    """What identifies an image's content: its registry digest when pulled, else its id."""
    digests: list[str] = image.attrs.get("RepoDigests") or []
    return digests[0] if digests else image_id(image)


# -- GPUs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSupport:
    """How this engine gives GPUs to containers: ``nvidia`` (runtime or hook), ``cdi``,
    or ``None`` with the reason."""

    kind: str | None
    detail: str


def _cdi_dirs(info: dict[str, Any]) -> list[Path]:
    dirs = info.get("CDISpecDirs")
    return [Path(d) for d in (dirs if dirs is not None else CDI_DIRS)]


def _cdi_has_nvidia(dirs: list[Path]) -> bool:
    for folder in dirs:
        try:
            specs = list(folder.glob("*.yaml")) + list(folder.glob("*.json"))
        except OSError:
            continue
        for spec in specs:
            try:
                if "nvidia.com/gpu" in spec.read_text(errors="replace"):
                    return True
            except OSError:
                continue
    return False


def gpu_support(info: dict[str, Any]) -> GpuSupport:
    """Decide from ``docker info`` (and the host's files) whether GPUs can be passed.

    ``--gpus`` style device requests work when the engine has the NVIDIA runtime, or
    finds ``nvidia-container-runtime-hook`` (the NVIDIA Container Toolkit). CDI device
    requests work when the engine reports CDI spec folders holding an NVIDIA spec.
    """
    runtimes = info.get("Runtimes") or {}
    if "nvidia" in runtimes or shutil.which("nvidia-container-runtime-hook"):
        return GpuSupport("nvidia", "NVIDIA container runtime")
    if info.get("CDISpecDirs") and _cdi_has_nvidia(_cdi_dirs(info)):
        return GpuSupport("cdi", "CDI (nvidia.com/gpu)")
    return GpuSupport(
        None,
        "the Docker engine cannot pass GPUs to containers "
        "(no NVIDIA container runtime, no CDI spec for nvidia.com/gpu)",
    )


def device_requests(
    support: GpuSupport, gpus: list[Gpu], visible: str | None
) -> list[DeviceRequest]:
    """Device requests for ``gpus``: all of them, or those CUDA_VISIBLE_DEVICES names.

    With CUDA_VISIBLE_DEVICES set, the GPUs are named by UUID: indexes inside the
    container restart at 0, UUIDs mean the same device everywhere.
    """
    from docker.types import DeviceRequest

    if not gpus or support.kind is None:
        return []
    if support.kind == "cdi":
        ids = (
            ["nvidia.com/gpu=all"]
            if visible is None
            else [f"nvidia.com/gpu={g.uuid}" for g in gpus]
        )
        return [DeviceRequest(driver="cdi", device_ids=ids)]
    if visible is None:
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=[g.uuid for g in gpus], capabilities=[["gpu"]])]
