"""The local runtime: services as child processes of this machine, no Docker needed.

Each service runs in its own session (process group) so a Ctrl-C in the terminal reaches
omnilab alone and omnilab stops the servers in order; each gets its own directory under
the stack's work directory, removed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.checks import Check, Status
from omnilab.errors import OmnilabError, StackStartError
from omnilab.gpu import Gpu, decide, host_gpus
from omnilab.procs import group_listens_on
from omnilab.runtimes.base import Runtime
from omnilab.runtimes.state import StackState, data_in_run_dir
from omnilab.services.base import Credentials, Endpoint, LaunchInfo, LocalRecipe, Service
from omnilab.unprivileged import chown_tree, grant_traverse, service_ids

if TYPE_CHECKING:
    from omnilab.config import Settings

#: Seconds a server gets to stop after its stop signal before it is killed.
STOP_GRACE = 10.0
#: Set in the environment of every process of a stack, to trace a stray one back to its
#: stack (servers that rewrite their process title, like Redis, wipe it: their working
#: directory, always inside the stack's directory, tells the same).
STACK_MARKER = "OMNILAB_STACK_ID"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes; reap it if it is our child.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def _live_groups(pgids: set[int]) -> set[int]:
    """Those of process groups ``pgids`` in which a live (non-zombie) process remains.

    ``killpg(pgid, 0)`` alone is not enough: once the owner is dead, the servers' zombies
    wait for an init that may never reap them (a container's or a sandbox's PID 1). One
    pass over ``/proc`` serves every group: on a busy host a pass costs a tenth of a
    second, which a teardown should pay once per poll, not once per server.
    """
    candidates = set()
    for pgid in pgids:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        candidates.add(pgid)
    live: set[int] = set()
    if not candidates:
        return live
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in candidates and fields[0] != "Z":
            live.add(int(fields[2]))
            if live == candidates:
                break
    return live


def _still_running(pgids: list[int]) -> list[int]:
    """The groups of ``pgids`` not yet gone: their leader alive, or another member."""
    leaders = {g for g in pgids if _pid_alive(g)}
    rest = _live_groups(set(pgids) - leaders)
    return [g for g in pgids if g in leaders or g in rest]


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class LocalRuntime(Runtime):
    name: ClassVar[str] = "local"
    #: The fallback of ``auto``: always possible where the binaries (or wheels) are.
    auto_preference: ClassVar[int] = 100
    #: Per-process rlimits are not per-service bounds (PostgreSQL forks a process per
    #: connection, RLIMIT_NPROC counts every process of the user, RLIMIT_FSIZE one file),
    #: and cgroups need privileges omnilab does not assume: nothing is claimed.
    bounds_note: ClassVar[str] = (
        "the local runtime enforces no resource bound (memory, cpus, pids, disk): its "
        "servers are plain processes of this host; use the docker runtime for bounds"
    )

    @classmethod
    def unavailable_reason(cls, settings: Any, services: Sequence[Service]) -> str | None:
        return None  # always possible; individual services may still be unavailable

    @classmethod
    def doctor_checks(cls, settings: Settings) -> list[Check]:
        """One line per service: the binary (and version) a local stack would run."""
        from omnilab.services import service_classes

        checks = []
        for name, service_cls in service_classes().items():
            try:
                recipe = service_cls().local_recipe(settings)
                checks.append(Check(f"local {name}", "ok", recipe.source))
            except OmnilabError as exc:
                status: Status = "warn" if service_cls.optional_locally else "problem"
                checks.append(Check(f"local {name}", status, str(exc).removeprefix(f"{name}: ")))
        return checks

    def prepare(self, services: Sequence[Service]) -> dict[str, LocalRecipe]:
        return {s.name: s.local_recipe(self.settings) for s in services}

    def gpus(self, policy: bool | str) -> list[Gpu]:
        return decide(policy, host_gpus(), "this host")

    # -- stack ----------------------------------------------------------------------

    def open_stack(self, state: StackState) -> None:
        if data_in_run_dir(state) and state.run_id:
            workdir = Path(self.settings.data_dir).resolve() / state.run_id
            workdir.mkdir(parents=True, exist_ok=False)
        else:
            workdir = Path(tempfile.mkdtemp(prefix=f"omnilab-{state.id[:8]}-"))
        # Traversable (not readable) by the unprivileged service user; each service's
        # own directory below is private to whoever runs that service.
        workdir.chmod(0o711)
        # Service logs go with the run's logs when there is a run, else stay in the stack.
        log_dir = Path(state.extra.get("log_dir") or workdir / "logs")
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state.extra["log_dir"] = str(log_dir)
        state.workdir = str(workdir)
        state.save()

    def reopen_stack(self, state: StackState) -> None:
        workdir = Path(state.workdir or "")
        if not state.workdir or not workdir.is_dir():
            raise StackStartError(f"the kept stack's data is gone: {workdir} does not exist")
        log_dir = Path(state.extra.get("log_dir") or workdir / "logs")
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state.extra["log_dir"] = str(log_dir)
        state.save()

    def launch(
        self,
        state: StackState,
        service: Service,
        recipe: LocalRecipe,
        credentials: Credentials,
        ports: dict[str, int],
    ) -> tuple[Endpoint, dict[str, Any], str]:
        return self._launch(state, service, recipe, credentials, ports, fresh=True)

    def relaunch(
        self,
        state: StackState,
        service: Service,
        recipe: LocalRecipe,
        credentials: Credentials,
        ports: dict[str, int],
    ) -> tuple[Endpoint, dict[str, Any], str]:
        return self._launch(state, service, recipe, credentials, ports, fresh=False)

    def _launch(
        self,
        state: StackState,
        service: Service,
        recipe: LocalRecipe,
        credentials: Credentials,
        ports: dict[str, int],
        *,
        fresh: bool,
    ) -> tuple[Endpoint, dict[str, Any], str]:
        assert state.workdir is not None
        data_dir = Path(state.workdir) / service.name
        if fresh:
            if data_dir.exists():
                shutil.rmtree(data_dir)  # a retry after a lost port race starts afresh
            data_dir.mkdir(mode=0o700)
        elif not data_dir.is_dir():
            raise StackStartError(f"{service.name}: its kept data {data_dir} is gone")

        if recipe.kind == "embedded":
            endpoint = Endpoint(service=service.name, credentials=credentials, path=data_dir)
            return endpoint, {"kind": "embedded", "data_dir": str(data_dir)}, recipe.source
        if recipe.kind == "external":
            endpoint = Endpoint(service=service.name, external_url=recipe.url)
            return endpoint, {"kind": "external", "url": recipe.url}, recipe.source

        assert recipe.make is not None
        plan = recipe.make(LaunchInfo(ports=ports, data_dir=data_dir, credentials=credentials))
        user = self.settings.service_user
        ids = service_ids(user) if plan.unprivileged else None
        for name, content in plan.secret_files.items():
            if not fresh:  # left by a relaunch that was killed before it was ready
                (data_dir / name).unlink(missing_ok=True)
            fd = os.open(data_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(content)
        if ids:
            chown_tree(data_dir, *ids)
            # The unprivileged user must reach its data and its binaries (a virtual
            # environment under /root, say).
            for path in (data_dir, Path(plan.argv[0]), *(Path(c[0]) for c in plan.setup)):
                grant_traverse(path, ids[0], user)

        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": os.environ.get("HOME", "/tmp") if not ids else str(data_dir),
            STACK_MARKER: state.id,
            **plan.env,
        }
        log_path = Path(state.extra["log_dir"]) / f"{service.name}.log"
        user_kw: dict[str, Any] = {}
        if ids:
            user_kw = {"user": ids[0], "group": ids[1], "extra_groups": []}
        handle: dict[str, Any] = {
            "kind": "process",
            "ports": dict(ports),
            "data_dir": str(data_dir),
            "log": str(log_path),
            "stop_signal": int(plan.stop_signal),
            "discard_signal": int(
                plan.stop_signal if plan.discard_signal is None else plan.discard_signal
            ),
        }
        with open(log_path, "ab") as log:
            # Setup initialises data (initdb); kept data is already initialised.
            for command in plan.setup if fresh else []:
                result = subprocess.run(
                    command,
                    env=env,
                    cwd=data_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=300,
                    check=False,
                    **user_kw,
                )
                if result.returncode != 0:
                    raise StackStartError(
                        f"{service.name}: `{Path(command[0]).name}` failed with exit status "
                        f"{result.returncode}; last log lines:\n{self.logs(handle)}"
                    )
            proc = subprocess.Popen(
                plan.argv,
                env=env,
                cwd=data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **user_kw,
            )
        handle["pid"] = proc.pid
        handle["pgid"] = proc.pid  # start_new_session: the server leads its own group
        handle["secret_files"] = [str(data_dir / n) for n in plan.secret_files]
        endpoint = Endpoint(service=service.name, ports=dict(ports), credentials=credentials)
        return endpoint, handle, recipe.source

    def serves_its_ports(self, handle: dict[str, Any]) -> bool:
        pgid, ports = handle.get("pgid"), set(handle.get("ports", {}).values())
        if pgid is None or not ports:
            return True
        return group_listens_on(int(pgid), ports) is not False

    def failure(self, handle: dict[str, Any]) -> str | None:
        pid = handle.get("pid")
        if pid is None or _pid_alive(pid):
            return None
        return "the process exited"

    def logs(self, handle: dict[str, Any], lines: int = 20) -> str:
        path = handle.get("log")
        if not path:
            return "(no log)"
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = text.strip().splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in tail) or "    (empty log)"

    def after_ready(self, handle: dict[str, Any]) -> None:
        """Secrets were read at start; remove them from disk."""
        for path in handle.get("secret_files", []):
            Path(path).unlink(missing_ok=True)

    def stop(self, handle: dict[str, Any]) -> None:
        self._stop_groups([handle], discard=False)

    def _stop_groups(self, handles: list[dict[str, Any]], *, discard: bool) -> None:
        """Signal every group at once, then wait for all: N servers stop in one grace.

        ``discard``: their data is removed next, so each gets its ``discard_signal`` (no
        clean shutdown to wait for: a throwaway stack's teardown is its slowest server's
        exit, not its slowest flush). Handles saved before that key existed stop cleanly.
        """
        groups = []
        for h in handles:
            if "pgid" not in h:
                continue
            sig = h.get("stop_signal", signal.SIGTERM)
            groups.append((h["pgid"], h.get("discard_signal", sig) if discard else sig))
        for pgid, sig in groups:
            _signal_group(pgid, sig)
        deadline = time.monotonic() + STOP_GRACE
        pending = [pgid for pgid, _ in groups]
        while pending and time.monotonic() < deadline:
            pending = _still_running(pending)
            if pending:
                time.sleep(0.01)
        for pgid in pending:
            _signal_group(pgid, signal.SIGKILL)
        for _ in range(100):
            pending = _still_running(pending)
            if not pending:
                break
            time.sleep(0.02)

    def destroy(self, state: StackState, *, remove_data: bool = True) -> list[str]:
        removed: list[str] = []
        handles = [h for h in state.services.values() if h.get("kind") == "process"]
        self._stop_groups(handles, discard=remove_data)
        removed += [
            f"process {h['pid']} ({name})"
            for name, h in state.services.items()
            if h.get("kind") == "process" and "pid" in h
        ]
        if remove_data and state.workdir and Path(state.workdir).exists():
            shutil.rmtree(state.workdir, ignore_errors=True)
            removed.append(f"directory {state.workdir}")
        return removed
