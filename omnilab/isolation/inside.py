"""The container side of ``isolation = "container"``: ``python3 -m omnilab.isolation.inside``.

It starts while the run's stack is still starting: it imports omnilab and the
experiment's file first (the slow part), then waits on stdin for the start message,
which the host sends once every service answers. Then it runs the experiment exactly as
the host would (:func:`omnilab.invoke.invoke`), with clients connected to the stack under
OmniMind's host names, and hands back metrics (a JSON-lines file the host follows), the
outcome (a result file) and its output (stdout and stderr). Exit status: 0 when the run
succeeded, 1 when it failed, 2 when the start message was unusable.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from omnilab.isolation import EXPERIMENT_DIR, IO_FOLDER, METRICS_FILE, RESULT_FILE, RUN_DIR


class NetworkStack:
    """What ``ctx`` needs of a stack, for code inside the stack's network: clients built
    from the services' specs, their network aliases and native ports, and this run's
    credentials (from the start message)."""

    def __init__(self, run_id: str, services: dict[str, dict[str, Any]], env: dict[str, str]):
        from omnilab.services import service_class
        from omnilab.services.base import Credentials, Endpoint

        self.id = run_id
        self.gpus: list[Any] = []
        self._env = dict(env)
        self._specs = {}
        self._endpoints = {}
        for name, info in services.items():
            spec = service_class(name)(**info.get("options", {}))
            self._specs[name] = spec
            self._endpoints[name] = Endpoint(
                service=name,
                host=spec.alias,
                ports=dict(spec.native_ports),
                credentials=Credentials(**info.get("credentials", {})),
            )
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def services(self) -> dict[str, Any]:
        return dict(self._specs)

    def endpoint(self, name: str) -> Any:
        if name not in self._endpoints:
            from omnilab.errors import OmnilabError

            declared = ", ".join(self._endpoints) or "no services"
            raise OmnilabError(
                f"this stack has no {name} service (it has {declared}); "
                f"declare {name.capitalize()}() in its services"
            )
        return self._endpoints[name]

    def client(self, name: str) -> Any:
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self._specs[name].client(self.endpoint(name))
            return self._clients[name]

    @property
    def env(self) -> dict[str, str]:
        return dict(self._env)

    @property
    def urls(self) -> dict[str, str]:
        return {n: self._specs[n].url(e) for n, e in self._endpoints.items()}

    def close_clients(self) -> None:
        with self._lock:
            for name, client in self._clients.items():
                # Closing a dead connection is not worth failing the run.
                with contextlib.suppress(Exception):
                    self._specs[name].close_client(client)
            self._clients.clear()


def _metrics_writer(path: Path) -> Any:
    """A MetricBuffer writer that appends rows as JSON lines, flushed at once."""
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by the caller)

    def write(rows: list[tuple[str, int, float, float]]) -> None:
        handle.write("".join(json.dumps(list(row)) + "\n" for row in rows))
        handle.flush()

    write.handle = handle  # type: ignore[attr-defined]
    return write


def _write_result(io_dir: Path, result: dict[str, Any]) -> None:
    partial = io_dir / (RESULT_FILE + ".part")
    partial.write_text(json.dumps(result))
    partial.replace(io_dir / RESULT_FILE)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from omnilab.errors import OmnilabError
    from omnilab.loader import load

    io_dir = Path(RUN_DIR) / IO_FOLDER
    ref = argv[0] if argv else ""
    # The slow part first, while the stack is still starting: omnilab, then the file.
    try:
        loaded = load(ref)
    except OmnilabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _write_result(io_dir, {"status": "failed", "error": str(exc)})
        return 1
    line = sys.stdin.readline()
    try:
        start = json.loads(line)
    except ValueError:
        # The host went away before the stack was ready: nothing to run.
        print("error: no start message on stdin", file=sys.stderr)
        return 2
    return _run(loaded.cls, start, io_dir)


def _run(cls: Any, start: dict[str, Any], io_dir: Path) -> int:
    from omnilab.context import RunContext
    from omnilab.invoke import experiment_logger, invoke
    from omnilab.params import validate
    from omnilab.subreaper import ProcessScope
    from omnilab.tracking.metrics import MetricBuffer

    os.environ.update(start.get("env", {}))
    run_id = start["run_id"]
    stack = NetworkStack(run_id, start.get("services", {}), start.get("env", {}))
    from omnilab.gpu import Gpu

    stack.gpus = [Gpu(**g) for g in start.get("gpus", [])]
    writer = _metrics_writer(io_dir / METRICS_FILE)
    buffer = MetricBuffer(writer, interval=0.1)
    status, summary, error = "failed", None, None
    # This process is the container's PID 1: every orphan comes to it. What the
    # experiment leaves running is ended here and reported with the outcome.
    scope = ProcessScope()
    try:
        values = validate(cls, start.get("params") or {})
        ctx = RunContext(
            run_id=run_id,
            params=values,
            stack=stack,  # type: ignore[arg-type]
            run_dir=Path(RUN_DIR),
            metrics=buffer,
            logger=experiment_logger(run_id, sys.stderr),
        )
        with scope:
            status, summary, error = invoke(cls, ctx)
    except Exception as exc:  # params refused here: the host validated the same ones
        error = f"{type(exc).__name__}: {exc}"
        print(error, file=sys.stderr)
    finally:
        scope.close()
        stack.close_clients()
        unsent = buffer.close()
        writer.handle.close()
        sys.stdout.flush()
        sys.stderr.flush()
    if unsent:
        error = (error or "") + f"\n{len(unsent)} metrics could not be handed back"
    from omnilab.resources import pids_refused

    _write_result(
        io_dir,
        {
            "status": status,
            "summary": summary,
            "error": error,
            "ended_processes": scope.ended,
            # The kernel's count, read here: the container's cgroup goes with it, before
            # the host could look (see ContainerIsolation.bounds_hit).
            "pids_refused": pids_refused() or 0,
        },
    )
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    sys.path.insert(0, EXPERIMENT_DIR)
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # As with host isolation, the run ends when run() returns: a thread the experiment
    # left running must not hold the container (and the stack) up.
    os._exit(code)
