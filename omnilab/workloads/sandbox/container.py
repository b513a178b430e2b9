"""The container sandbox: generated code in a throwaway container with no network.

Used under the docker runtime. The container has no network at all (``network_mode=
"none"``), runs as an unprivileged user with every capability dropped and
``no-new-privileges``, a read-only root file system, the scratch folder mounted
read-only, a small ``/tmp`` in memory, and cgroup limits on memory (swap included),
CPU and process count; it is killed at the wall-clock limit and always removed.

The image must have ``python3`` on its PATH; it is ``OMNILAB_IMAGE_SANDBOX`` (or the
``image`` argument), by default the codegen image ``omnilab images build codegen`` makes
from Debian packages. omnilab never pulls it during a run: a missing image is a clear
error, naming the command that builds it, before any code runs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from omnilab.errors import RuntimeUnavailable, UsageError
from omnilab.resources import Bounds
from omnilab.runtimes.docker.bounds import host_config
from omnilab.unprivileged import grant_traverse
from omnilab.version import __version__
from omnilab.workloads.sandbox.base import Limits, Sandbox

WORKDIR = "/sandbox"
#: nobody:nogroup in Debian-based images.
USER_ID = 65534


def _labels(run_id: str | None) -> dict[str, str]:
    """The docker runtime's owner labels: ``omnilab gc`` removes a sandbox container
    whose owner died before removing it, as it does a stack's."""
    from omnilab.procs import process_start_time
    from omnilab.runtimes.docker import labels

    start = process_start_time(os.getpid())
    found = {
        **labels.extra_labels(),
        labels.MANAGED: "true",
        labels.SERVICE: "sandbox",
        labels.OWNER_HOST: labels.this_host(),
        labels.OWNER_PID: str(os.getpid()),
        labels.OWNER_START: "" if start is None else str(start),
        labels.VERSION: __version__,
    }
    if run_id:
        found[labels.RUN] = run_id
    return found


class ContainerSandbox(Sandbox):
    kind = "container"

    def __init__(
        self, image: str, *, run_id: str | None = None, cpus: float = 1.0, client: Any = None
    ) -> None:
        import docker

        from omnilab.runtimes.docker import engine

        self.image = image
        self.run_id = run_id
        self.cpus = cpus
        try:
            # The docker runtime's engine access: DOCKER_HOST, timeouts, one client.
            self.client = client or engine.connect()
            self.client.ping()
        except RuntimeUnavailable as exc:
            raise UsageError(f"sandbox: {exc}") from None
        except docker.errors.DockerException as exc:
            raise UsageError(f"sandbox: no Docker engine answers ({exc})") from None
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise UsageError(
                f"sandbox: image {image!r} is not on this Docker engine; run "
                "`omnilab images build codegen` to build omnilab's (no registry needed), "
                "or set OMNILAB_IMAGE_SANDBOX to an image with python3"
            ) from None

    def isolation(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "image": self.image,
            "network": "none: container with network_mode=none",
            "processes": "own PID namespace (container); pids cgroup limit",
            "user": f"{USER_ID}:{USER_ID}, all capabilities dropped, no-new-privileges",
            "rlimits": "memory and swap (cgroup), address space (set by the test runner), "
            "CPU quota, CPU time, file size",
            "filesystem": "read-only root, scratch folder mounted read-only, /tmp tmpfs",
        }

    def prepare_scratch(self, scratch: Path) -> None:
        super().prepare_scratch(scratch)
        # The container's user must reach the folder through its parents: search
        # permission (not read) is added where missing, and said, as for PostgreSQL.
        grant_traverse(
            scratch,
            USER_ID,
            f"uid {USER_ID}",
            why="the sandbox container reads the code from a folder below",
        )

    def _execute(
        self, scratch: Path, argv_tail: list[str], limits: Limits
    ) -> tuple[str, int | None, bool]:
        import docker
        import requests
        from docker.types import Ulimit

        mib = 1024 * 1024
        labels = _labels(self.run_id)
        container = self.client.containers.create(
            self.image,
            # The image's own entrypoint (a server's, say) must not wrap the runner.
            entrypoint=["python3", "-I", "-B"],
            command=argv_tail,
            working_dir=WORKDIR,
            user=f"{USER_ID}:{USER_ID}",
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "rw,size=64m,mode=1777"},
            volumes={str(scratch): {"bind": WORKDIR, "mode": "ro"}},
            environment={"HOME": "/tmp", "TMPDIR": "/tmp", "OMP_NUM_THREADS": "1"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # The same translation of bounds into cgroup limits as every stack container.
            **host_config(
                Bounds(memory=limits.memory_mb * mib, cpus=self.cpus, pids=limits.processes)
            ),
            ulimits=[
                Ulimit(name="cpu", soft=limits.cpu_s, hard=limits.cpu_s),
                Ulimit(name="fsize", soft=limits.file_mb * mib, hard=limits.file_mb * mib),
                Ulimit(name="core", soft=0, hard=0),
            ],
            labels=labels,
            detach=True,
        )
        timed_out = False
        code: int | None = None
        try:
            container.start()
            try:
                code = container.wait(timeout=limits.wall_s + 5)["StatusCode"]
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
                timed_out = True
                container.kill()
            out = container.logs(stdout=True, stderr=True, tail=2000).decode("utf-8", "replace")
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        return out, code, timed_out
