"""The experiments a server may run: those defined in one configured folder.

The HTTP API names experiments, never files: a client cannot make the server import a
path or run code of its choosing. The folder is rescanned when a file in it changes, so
adding an experiment needs no restart. A file that does not import, or two experiments
with the same name, are reported as problems and left out, never a crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnilab.errors import ExperimentLoadError, UsageError
from omnilab.experiment import Experiment
from omnilab.loader import code_sha256, defines_run, experiments_in, import_file
from omnilab.requirements import Requirements


class UnknownExperiment(UsageError):
    """A name that is not among the experiments of the configured folder."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    cls: type[Experiment]
    path: Path
    relative: str
    #: The file's content hash when it was loaded: the code a run queued now is run
    #: with, which a worker compares with its own copy of the file.
    sha256: str = ""
    #: What a worker must offer to run it (``Experiment.requires`` and what ``gpu`` and
    #: ``isolation`` imply); None: any worker, through the shared queue.
    requires: Requirements | None = None

    @property
    def source(self) -> str:
        """``file.py:Class`` relative to the folder: how the run record names it."""
        return f"{self.relative}:{self.cls.__name__}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.cls.description(),
            "file": self.relative,
            "services": self.cls.service_names(),
            "gpu": self.cls.gpu,
            "requires": self.requires.as_json() if self.requires else None,
            "sha256": self.sha256,
        }


@dataclass
class _Scan:
    stamps: dict[Path, tuple[int, int]] = field(default_factory=dict)
    entries: dict[str, CatalogEntry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class Catalog:
    """Experiments by name, from the ``*.py`` files directly in ``folder``."""

    def __init__(self, folder: Path, *, recheck_s: float = 1.0) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.recheck_s = recheck_s
        self._scan = _Scan()
        self._checked = 0.0
        self._lock = threading.Lock()
        self.generation = 0
        self.refresh(force=True)

    # -- scanning -----------------------------------------------------------------------

    def _files(self) -> dict[Path, tuple[int, int]]:
        if not self.folder.is_dir():
            return {}
        stamps = {}
        for path in sorted(self.folder.glob("*.py")):
            if path.name.startswith(("_", ".")):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            stamps[path] = (stat.st_mtime_ns, stat.st_size)
        return stamps

    def refresh(self, *, force: bool = False) -> bool:
        """Rescan if a file was added, removed or changed; returns whether it did."""
        now = time.monotonic()
        if not force and now - self._checked < self.recheck_s:
            return False
        with self._lock:
            self._checked = now
            stamps = self._files()
            if not force and stamps == self._scan.stamps:
                return False
            self._scan = self._load(stamps)
            self.generation += 1
            return True

    def _load(self, stamps: dict[Path, tuple[int, int]]) -> _Scan:
        scan = _Scan(stamps=stamps)
        if not self.folder.is_dir():
            scan.problems.append(f"{self.folder}: no such folder (OMNILAB_EXPERIMENTS_DIR)")
            return scan
        found: dict[str, list[CatalogEntry]] = {}
        for path in stamps:
            relative = path.name
            try:
                digest = code_sha256(path)
                module = import_file(path)
            except ExperimentLoadError as exc:
                scan.problems.append(str(exc))
                continue
            except OSError as exc:  # removed or unreadable since the folder was listed
                scan.problems.append(f"{path}: cannot read: {exc.strerror or exc}")
                continue
            for cls in experiments_in(module):
                if not defines_run(cls):  # a base class, or one that forgot run()
                    continue
                entry = CatalogEntry(
                    cls.experiment_name(), cls, path, relative, digest, cls.requirements()
                )
                found.setdefault(entry.name, []).append(entry)
        for name, entries in sorted(found.items()):
            if len(entries) > 1:
                where = ", ".join(e.source for e in entries)
                scan.problems.append(
                    f"experiment name {name!r} is defined twice ({where}); "
                    "neither can be queued until one is renamed"
                )
                continue
            scan.entries[name] = entries[0]
        return scan

    # -- reading ------------------------------------------------------------------------

    @property
    def problems(self) -> list[str]:
        return list(self._scan.problems)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(list(self._scan.entries.values()))

    def __len__(self) -> int:
        return len(self._scan.entries)

    def names(self) -> list[str]:
        return sorted(self._scan.entries)

    def get(self, name: str) -> CatalogEntry:
        self.refresh()
        entry = self._scan.entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            # A file left out for a problem that names the experiment (a bad `requires`):
            # that is what the user needs to read, not only that the name is unknown.
            why = "".join(f"; {p}" for p in self._scan.problems if f": {name}." in p)
            raise UnknownExperiment(
                f"no experiment named {name!r} among those the server may run "
                f"(available: {known}){why}"
            )
        return entry
