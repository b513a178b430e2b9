"""The host side of ``isolation = "container"``: the experiment's code in a container of
the experiments image, on its run's network.

Everything that can refuse is checked in :meth:`ContainerIsolation.prepare`, before
anything starts (the docker runtime, a file to mount, the image). The container is then
created and started as soon as the stack's network exists, so that Python, omnilab and
the experiment's file load while the services start; it waits on stdin for the start
message. It carries the stack's labels, so the stack's teardown, the reaper (owner
killed) and ``omnilab gc`` remove it like the services' containers; it is not
privileged, runs as the host user (the artifacts it writes are the user's) and gets the
run's GPUs when the run has them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab.errors import OmnilabError, UsageError
from omnilab.isolation import EXPERIMENT_DIR, IO_FOLDER, METRICS_FILE, RESULT_FILE, RUN_DIR
from omnilab.resources import EXPERIMENT, EXPERIMENT_DEFAULTS, Bounds

if TYPE_CHECKING:
    from omnilab.runtimes.state import StackState
    from omnilab.stack import Stack
    from omnilab.tracking.metrics import MetricBuffer

#: The service label and name prefix of the experiment's container.
ROLE = "experiment"
#: Seconds between two looks at the metrics file while the experiment runs.
FOLLOW_INTERVAL = 0.05


def image_tag() -> str:
    """``OMNILAB_IMAGE_EXPERIMENTS``, else the catalog's experiments image."""
    from omnilab.runtimes.docker.images.recipes import EXPERIMENTS

    return os.environ.get("OMNILAB_IMAGE_EXPERIMENTS") or EXPERIMENTS.tag


def container_name(stack_id: str) -> str:
    return f"{ROLE}-exp-{stack_id[:8]}"


class ContainerIsolation:
    """One experiment run inside a container; made by :meth:`prepare`."""

    def __init__(
        self,
        source: Path,
        class_name: str,
        params: dict[str, Any],
        run_dir: Path,
        image: str,
        image_id: str,
        bounds: Bounds,
    ) -> None:
        self.source = source
        #: Its container's bounds (``resources.per_service["experiment"]``, else the
        #: experiment's own defaults); its ``disk`` bounds its ``/tmp``.
        self.bounds = bounds
        self.params = params
        self.class_name = class_name
        self.run_dir = run_dir
        self.image = image
        self.image_id = image_id
        self.io_dir = run_dir / IO_FOLDER
        self.container: Any = None
        self._launching: threading.Thread | None = None
        self._launch_error: BaseException | None = None
        self._stack: Stack | None = None
        #: What the experiment left running in its container, which omnilab ended there
        #: (the container's init is omnilab's own process: see omnilab.subreaper).
        self.ended_processes: list[dict[str, Any]] = []
        #: New processes the kernel refused the container at its processes bound: as
        #: its own process reported them at the end, or as seen from here while it ran.
        self.pids_refused = 0
        self._pid = 0  # its first process, as this host sees it
        self._launched_at = 0.0
        self._stack_id = ""

    # -- decided before anything starts ----------------------------------------------

    @classmethod
    def prepare(
        cls,
        stack: Stack,
        source: Path | None,
        class_name: str,
        params: dict[str, Any],
        run_dir: Path,
    ) -> ContainerIsolation:
        """Check what container isolation needs; UsageError (nothing started) if not."""
        from omnilab.runtimes.docker import engine

        if source is None:
            raise UsageError(
                "isolation='container' needs the experiment in a .py file (it is mounted "
                "into the container); this class was not defined in one"
            )
        runtime = stack.runtime.name if stack.runtime else None
        if runtime != "docker":
            raise UsageError(
                f"isolation='container' needs the docker runtime, and this run's runtime is "
                f"{runtime}; use --runtime docker, or --isolation host"
            )
        tag = image_tag()
        client = engine.connect()
        image = engine.local_image(client, tag)
        if image is None:
            raise UsageError(
                f"isolation='container': image {tag} is not on this Docker engine; run "
                "`omnilab images build experiments` to build it (no registry needed)"
            )
        if not os.environ.get("OMNILAB_IMAGE_EXPERIMENTS"):
            # The start message and the result file are omnilab's own format on both
            # sides: an image with another omnilab than the host's is refused.
            from omnilab.runtimes.docker.images import builder
            from omnilab.runtimes.docker.images.recipes import EXPERIMENTS

            stale = builder.status(client, EXPERIMENTS).stale
            if stale:
                raise UsageError(
                    f"isolation='container': image {tag} is out of date ({stale}); run "
                    "`omnilab images build experiments` to rebuild it"
                )
        assert stack.runtime is not None
        own = stack.runtime.bounds(stack.resources, {EXPERIMENT: EXPERIMENT_DEFAULTS})
        return cls(
            source, class_name, params, run_dir, tag, engine.image_id(image), own[EXPERIMENT]
        )

    def describe(self) -> dict[str, Any]:
        """What the run record keeps about where the code ran."""
        return {
            "kind": "container",
            "image": self.image,
            "image_id": self.image_id,
            "bounds": self._recorded(),
        }

    def _recorded(self) -> dict[str, Any]:
        from omnilab.runtimes.docker import bounds

        recorded = bounds.record(self.bounds, disk_note=None)
        recorded["notes"] = [
            *recorded.get("notes", []),
            "disk: bounds /tmp; artifacts are written to the host's run folder, unbounded",
        ]
        return recorded

    # -- started with the stack --------------------------------------------------------

    def launch(self, stack: Stack, state: StackState) -> None:
        """Create and start the container in the background once the network exists."""
        self._stack = stack
        self._launching = threading.Thread(
            target=self._launch, args=(stack, state), name="omnilab-experiment", daemon=True
        )
        self._launching.start()

    def _launch(self, stack: Stack, state: StackState) -> None:
        try:
            self._launched_at, self._stack_id = time.time(), state.id
            self.container = self._create(stack, state)
            self.container.start()
            with contextlib.suppress(Exception):
                self.container.reload()
                self._pid = int(self.container.attrs.get("State", {}).get("Pid") or 0)
        except OmnilabError as exc:
            self._launch_error = exc
        except Exception as exc:
            self._launch_error = OmnilabError(
                f"the experiment's container could not be started ({type(exc).__name__}: {exc})"
            )

    def _create(self, stack: Stack, state: StackState) -> Any:
        import docker.errors
        from docker.types import Mount

        from omnilab.runtimes.docker import bounds, engine, labels
        from omnilab.runtimes.docker.runtime import DockerRuntime

        client = engine.connect()
        artifacts = self.run_dir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        self.io_dir.mkdir(parents=True, exist_ok=True)
        for stale in (METRICS_FILE, RESULT_FILE):
            (self.io_dir / stale).unlink(missing_ok=True)
        network = state.extra["network"]
        runtime = stack.runtime
        requests = runtime.gpu_requests(stack.gpus) if isinstance(runtime, DockerRuntime) else []
        tmp_size = f",size={self.bounds.disk}" if self.bounds.disk else ""
        try:
            return client.containers.create(
                self.image,
                command=[
                    "python3",
                    "-m",
                    "omnilab.isolation.inside",
                    f"{EXPERIMENT_DIR}/{self.source.name}:{self.class_name}",
                ],
                name=container_name(state.id),
                labels=labels.stack_labels(state, ROLE),
                # No secrets here: they come with the start message, on stdin.
                environment={
                    "ENVIRONMENT": "docker_experiments",
                    "HOME": "/tmp",
                    "PYTHONUNBUFFERED": "1",
                    "OMNILAB_RUN_ID": state.run_id or state.id,
                },
                working_dir=EXPERIMENT_DIR,
                user=f"{os.getuid()}:{os.getgid()}",
                mounts=[
                    Mount(EXPERIMENT_DIR, str(self.source.parent), type="bind", read_only=True),
                    Mount(f"{RUN_DIR}/artifacts", str(artifacts), type="bind"),
                    Mount(f"{RUN_DIR}/{IO_FOLDER}", str(self.io_dir), type="bind"),
                ],
                tmpfs={"/tmp": f"rw,exec,mode=1777{tmp_size}"},
                network=network,
                device_requests=requests or None,
                security_opt=["no-new-privileges"],
                cap_drop=["ALL"],
                stdin_open=True,
                detach=True,
                **bounds.host_config(self.bounds),
            )
        except docker.errors.APIError as exc:
            raise OmnilabError(
                f"the experiment's container could not be created ({exc.explanation or exc})"
            ) from None

    # -- the run ------------------------------------------------------------------------

    def run(self, buffer: MetricBuffer) -> tuple[str, dict[str, Any] | None, str | None]:
        """Send the start message, relay output and metrics until the container exits;
        (status, summary, error) as :func:`omnilab.invoke.invoke` gives them."""
        stack = self._stack
        assert stack is not None and self._launching is not None
        self._launching.join()
        if self._launch_error is not None:
            raise self._launch_error
        relay = threading.Thread(target=self._relay_output, name="omnilab-output", daemon=True)
        relay.start()
        self._send_start(stack)
        follower = _MetricFollower(self.io_dir / METRICS_FILE, buffer)
        try:
            code = self._wait(follower)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): the code stops now, not at the teardown.
            with contextlib.suppress(Exception):
                self.container.kill()
            raise
        finally:
            follower.drain()
            relay.join(timeout=5)
        return self._outcome(code)

    def _start_message(self, stack: Stack) -> bytes:
        from omnilab.runtimes.docker.runtime import network_env

        services = {
            name: {
                "options": running.service.spec_options(),
                "credentials": {
                    "username": running.endpoint.credentials.username,
                    "password": running.endpoint.credentials.password,
                    "database": running.endpoint.credentials.database,
                },
            }
            for name, running in stack.services.items()
        }
        message = {
            "run_id": stack.id,
            "params": self.params,
            "services": services,
            "env": network_env(stack.services),
            "gpus": [g.to_dict() for g in stack.gpus],
        }
        return (json.dumps(message) + "\n").encode()

    def _send_start(self, stack: Stack) -> None:
        """The start message on the container's stdin, then stdin closed."""
        sock = self.container.attach_socket(params={"stdin": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        try:
            raw.sendall(self._start_message(stack))
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_WR)
        finally:
            sock.close()

    def _relay_output(self) -> None:
        """The container's stdout and stderr, as they come, into this run's own."""
        with contextlib.suppress(Exception):
            stream = self.container.client.api.attach(
                self.container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True
            )
            for out, err in stream:
                if out:
                    sys.stdout.write(out.decode("utf-8", "replace"))
                    sys.stdout.flush()
                if err:
                    sys.stderr.write(err.decode("utf-8", "replace"))
                    sys.stderr.flush()

    def _wait(self, follower: _MetricFollower) -> int:
        import requests

        while True:
            follower.poll()
            self._look_at_pids()
            try:
                result = self.container.wait(timeout=FOLLOW_INTERVAL * 4)
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
                continue  # still running: the wait timed out
            return int(result.get("StatusCode", -1))

    def _look_at_pids(self) -> None:
        """The kernel's count of refused forks, while the container runs (its cgroup goes
        with it): in case its own process cannot report it at the end."""
        if self._pid > 0:
            from omnilab.resources import pids_refused

            seen = pids_refused(f"/proc/{self._pid}/cgroup") or 0
            self.pids_refused = max(self.pids_refused, seen)

    def bounds_hit(self) -> list[str]:
        """One line per bound the experiment's container hit, as for a service's (see
        :func:`omnilab.runtimes.docker.bounds.hits`): its memory (an OOM kill of any of
        its processes) and its processes bound. Checked before the container goes."""
        from omnilab.runtimes.docker import bounds

        if self.container is None:
            return []
        recorded = self._recorded()
        found: list[str] = []
        killed = False
        with contextlib.suppress(Exception):
            self.container.reload()
            killed = bool(self.container.attrs.get("State", {}).get("OOMKilled"))
        if not killed and self._stack_id:
            oom = bounds.oom_killed(self.container.client, self._stack_id, self._launched_at)
            killed = ROLE in oom
        if killed:
            found.append(bounds.memory_hit(EXPERIMENT, recorded))
        if self.pids_refused:
            found.append(bounds.pids_hit(EXPERIMENT, recorded, self.pids_refused))
        return found

    def _outcome(self, code: int) -> tuple[str, dict[str, Any] | None, str | None]:
        path = self.io_dir / RESULT_FILE
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            result = None
        if result is None:
            # A bound it hit (an OOM kill) is named by bounds_hit(), checked next.
            why = f"the experiment's container exited with status {code} and reported no result"
            return "failed", None, why
        self.ended_processes = list(result.get("ended_processes") or [])
        self.pids_refused = max(self.pids_refused, int(result.get("pids_refused") or 0))
        status = "succeeded" if result.get("status") == "succeeded" and code == 0 else "failed"
        error = result.get("error")
        if error:
            # Tracebacks name the mounted folder; the record names the user's own files.
            error = error.replace(f'"{EXPERIMENT_DIR}/', f'"{self.source.parent}/')
        if status == "failed" and not error:
            error = f"the experiment's container exited with status {code}"
        return status, result.get("summary") if status == "succeeded" else None, error

    # -- always ---------------------------------------------------------------------------

    def remove(self) -> None:
        """Remove the container whatever happened (the stack's teardown would too)."""
        if self._launching is not None:
            self._launching.join(timeout=60)
        container, self.container = self.container, None
        if container is None:
            return
        # Its output is in the run's log already: it was relayed as it came.
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)


class _MetricFollower:
    """Reads the metrics file the container appends to, whole lines only."""

    def __init__(self, path: Path, buffer: MetricBuffer) -> None:
        self.path = path
        self.buffer = buffer
        self._offset = 0
        self._partial = b""
        self._last = 0.0

    def poll(self) -> None:
        now = time.monotonic()
        if now - self._last < FOLLOW_INTERVAL:
            return
        self._last = now
        self._read()

    def drain(self) -> None:
        self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.strip():
                continue
            with contextlib.suppress(ValueError, TypeError):
                key, step, value, ts = json.loads(line)
                self.buffer.record((key, step, value, ts))
