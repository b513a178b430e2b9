"""What a running stack is made of, on disk, so that someone other than its owner can
remove it: the reaper when the owner dies, ``omnilab stack down`` for a kept stack.

One JSON file per stack under ``<state dir>/stacks/``. It holds no secrets: credentials
of a kept stack go to a separate ``.env`` file readable by its owner alone.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnilab.host import host_name
from omnilab.procs import owner_alive, process_start_time


@dataclass
class StackState:
    id: str
    runtime: str
    owner_pid: int
    owner_start: int | None
    created_at: float
    workdir: str | None = None
    run_id: str | None = None
    keep: bool = False
    host: str = field(default_factory=host_name)
    #: service name -> runtime-specific handle (pid, container id, ports, data dir...)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: service name -> public URL (passwords masked), for `omnilab stack ls`.
    urls: dict[str, str] = field(default_factory=dict)
    #: runtime-specific extras (network name, GPUs given ...)
    extra: dict[str, Any] = field(default_factory=dict)

    path: Path | None = field(default=None, repr=False, compare=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @classmethod
    def create(cls, state_dir: Path, stack_id: str, runtime: str, **kw: Any) -> StackState:
        pid = os.getpid()
        state = cls(
            id=stack_id,
            runtime=runtime,
            owner_pid=pid,
            owner_start=process_start_time(pid),
            created_at=time.time(),
            **kw,
        )
        state.path = stacks_dir(state_dir) / f"{stack_id}.json"
        state.save()
        return state

    @classmethod
    def load(cls, path: Path) -> StackState:
        data = json.loads(path.read_text())
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_") and f != "path"}
        state = cls(**{k: v for k, v in data.items() if k in known})
        state.path = path
        return state

    def to_dict(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if not name.startswith("_") and name != "path"
        }

    def save(self) -> None:
        """Atomic write: a reader never sees half a file."""
        assert self.path is not None
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_dict(), fh, indent=1, default=str)
            os.replace(tmp, self.path)

    def add_service(self, name: str, handle: dict[str, Any]) -> None:
        # Services start on threads of their own: one adding itself while another's save
        # serializes the dict would break that save ("dictionary changed size").
        with self._lock:
            self.services[name] = handle
            self.save()

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            env_file(self.path.parent, self.id).unlink(missing_ok=True)

    def owner_is_alive(self) -> bool:
        return owner_alive(self.owner_pid, self.owner_start)


def data_in_run_dir(state: StackState) -> bool:
    """Whether the stack's folder goes under ``data/experiments/<run id>/`` (a kept or a
    retained stack) rather than a temporary one; state files written before the key was
    named ``data_in_run_dir`` say ``keep_data``."""
    extra = state.extra
    return bool(extra.get("data_in_run_dir", extra.get("keep_data")))


def stacks_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "stacks"


def env_file(stacks: Path, stack_id: str) -> Path:
    return stacks / f"{stack_id}.env"


def all_states(state_dir: Path) -> list[StackState]:
    states = []
    for path in sorted(stacks_dir(state_dir).glob("*.json")):
        try:
            states.append(StackState.load(path))
        except (OSError, ValueError, TypeError):
            continue  # half-deleted or foreign file: not ours to judge here
    return states


def write_env_file(state: StackState, env: dict[str, str]) -> Path:
    """Credentials of a kept stack, mode 0600, for ``source``-ing in a shell."""
    assert state.path is not None
    path = env_file(state.path.parent, state.id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for key, value in env.items():
            fh.write(f"export {key}='{value}'\n")
    return path
