"""What a run ran on: Python, packages, host, git commit. Recorded with every run."""

from __future__ import annotations

import getpass
import platform
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from omnilab import gitstate
from omnilab.host import host_name

#: Distributions whose versions change results or behaviour; recorded when installed.
TRACKED_PACKAGES = (
    "omnilab",
    "pydantic",
    "psycopg",
    "redis",
    "qdrant-client",
    "ollama",
    "docker",
    "numpy",
    "qiskit",
    "qiskit-aer",
    "qiskit-aer-gpu",
    "torch",
    "jinja2",
)


@lru_cache(maxsize=8)
def _package_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    versions = []
    for name in names:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Versions of the packages a process runs with, read once per process: what is
    imported cannot change under it, and reading them costs ~30 ms per run (a worker
    reads them before forking each run's process)."""
    return dict(_package_versions(names))


def git_info(path: Path) -> dict[str, Any] | None:
    """Commit, branch and dirtiness of the repository holding ``path``; None outside one."""
    return gitstate.git_info(path)


def prefetch_git(directory: Path) -> None:
    """Read the git state of ``directory`` ahead of a run (a worker's spare does), to be
    used only while nothing it depends on has changed."""
    gitstate.prefetch(directory)


def owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{host_name()}"


def capture(source: Path | None) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "hostname": host_name(),
        "packages": package_versions(),
        "git": git_info(source or Path.cwd()),
    }
