"""A retained stack: stopped, with its data left on disk, so that it can be reopened.

A run whose experiment declares ``promotes`` retains its stack's data until the run is
promoted or discarded (run records, the CLI and the README call it the run's "kept
data"): the servers stop (cleanly: Redis saves first), their data stays in the stack's
directory (``data/experiments/<run id>/`` for the local runtime), and two files beside
it say how to start them again:

- ``stack.json``: the runtime, the run, each service's spec options and handle; no secrets;
- ``credentials.json``: the stack's credentials, mode 0600. They never reach a run record
  or a log: the data was written under them (PostgreSQL's password is in its cluster), so
  the reopened servers must be given the same ones.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab.errors import UsageError
from omnilab.services.base import Credentials, Service

if TYPE_CHECKING:
    from omnilab.runtimes.base import RunningService
    from omnilab.runtimes.state import StackState

DESCRIPTOR = "stack.json"
CREDENTIALS = "credentials.json"
FORMAT = 1


@dataclass
class RetainedStack:
    """What :meth:`omnilab.stack.Stack.reopen` needs to start a retained stack again."""

    path: Path
    stack_id: str
    runtime: str
    run_id: str | None
    saved_at: float
    #: service name -> {"options": spec options, "handle": runtime handle,
    #: "persisted": whether its data was written completely, "error": why not}
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str) -> RetainedStack:
        path = Path(path)
        try:
            data = json.loads((path / DESCRIPTOR).read_text())
        except FileNotFoundError:
            raise UsageError(f"no kept stack data at {path} (it was removed)") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"the kept stack at {path} is unreadable: {exc}") from None
        if data.get("format") != FORMAT:
            raise UsageError(f"the kept stack at {path} has an unknown format")
        return cls(
            path=path,
            stack_id=data["stack_id"],
            runtime=data["runtime"],
            run_id=data.get("run_id"),
            saved_at=data["saved_at"],
            services=data.get("services", {}),
            extra=data.get("extra", {}),
        )

    def spec(self, name: str) -> Service:
        """The service spec as the stack declared it (same database name, options...)."""
        from omnilab.services import service_class

        if name not in self.services:
            have = ", ".join(self.services) or "none"
            raise UsageError(f"the kept stack at {self.path} has no {name} (it has {have})")
        return service_class(name)(**self.services[name].get("options", {}))

    def credentials(self, name: str) -> Credentials:
        path = self.path / CREDENTIALS
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise UsageError(f"the kept stack's credentials are unreadable: {exc}") from None
        return Credentials(**data.get(name, {}))

    def unusable(self, name: str) -> str | None:
        """Why the service's kept data cannot be trusted, or None."""
        info = self.services.get(name, {})
        if info.get("persisted", True):
            return None
        return f"{name}'s data was not saved completely when the run ended: {info.get('error')}"


def save(
    state: StackState, services: dict[str, RunningService], failures: dict[str, str]
) -> RetainedStack:
    """Write the descriptor and the credentials beside the data of a stopped stack."""
    assert state.workdir is not None
    path = Path(state.workdir)
    retained = RetainedStack(
        path=path,
        stack_id=state.id,
        runtime=state.runtime,
        run_id=state.run_id,
        saved_at=time.time(),
        services={
            name: {
                "options": running.service.spec_options(),
                "handle": {k: v for k, v in running.handle.items() if k != "secret_files"},
                "persisted": name not in failures,
                "error": failures.get(name),
            }
            for name, running in services.items()
        },
        extra={"gpus": state.extra.get("gpus", [])},
    )
    secrets = {name: asdict(r.endpoint.credentials) for name, r in services.items()}
    _write_private(path / CREDENTIALS, json.dumps(secrets))
    descriptor = {k: v for k, v in asdict(retained).items() if k != "path"}
    (path / DESCRIPTOR).write_text(json.dumps({"format": FORMAT, **descriptor}, indent=1))
    return retained


def remove(path: Path | str) -> bool:
    """Delete a retained stack's directory; False when it was already gone."""
    path = Path(path)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
