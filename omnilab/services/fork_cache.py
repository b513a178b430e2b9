"""The fork cache: production items a fork copied, kept on local disk by their checksum.

A second fork of an unchanged production item restores it from here instead of reading
it from production again (docs/fork.md, "The fork cache"). The key of an entry is a hash
of what identifies the item (service, production's server and database, the item and its
selection) **and of production's checksum of it**, which the fork computes in production
first: an entry can only be found for the exact data production holds now, so changed data
is never served from the cache, by construction. What a restore puts in the run's server is
then verified against that same checksum, as a copy from production is.

Layout, under the cache folder (``OMNILAB_FORK_CACHE_DIR``, default ``.omnilab/fork-cache``
at the project root)::

    .lock               flock: shared while an entry is read, exclusive to add or remove one
    <key>/entry.json    what the entry is (service, item, production's URL masked, checksum,
                        size, when made); its mtime is when it was last used (LRU order)
    <key>/...           the data, in the service's format (PostgreSQL: rows.bin, binary COPY)
    .tmp-<key>-<rand>/  an entry being written, with an ``owner`` file its writer holds an
                        flock on; renamed to <key> in one step once complete

An interrupted writer (Ctrl-C, SIGKILL) leaves at most its ``.tmp-`` folder, which is no
entry (nothing reads it) and which the next user of the cache removes: its owner's flock is
gone with the process, whatever its pid became. Two forks that fill the same entry at once
each write their own temporary folder; the first rename wins and the second is dropped.
The size bound (``OMNILAB_FORK_CACHE_SIZE``) is kept each time an entry is added: the least
recently used entries go first; an entry larger than the whole bound is not kept.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnilab.config import Settings

ENTRY_FILE = "entry.json"
LOCK_FILE = ".lock"
TEMP_PREFIX = ".tmp-"
NEW_PREFIX = ".new-"
OWNER_FILE = "owner"


@dataclass(frozen=True)
class Entry:
    """One complete entry of the cache."""

    key: str
    path: Path
    meta: dict[str, Any]
    size: int
    last_used: float

    @property
    def service(self) -> str:
        return str(self.meta.get("service", ""))

    @property
    def label(self) -> str:
        return str(self.meta.get("label", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "service": self.service,
            "item": self.label,
            "production": self.meta.get("url", ""),
            "checksum": self.meta.get("checksum", {}),
            "size": self.size,
            "last_used": self.last_used,
            "created": self.meta.get("created"),
        }


def cache_key(identity: dict[str, Any]) -> str:
    """The entry's name: SHA-256 of the item's identity and production's checksum of it
    (canonical JSON), so equal names mean equal data."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


class ForkCache:
    """The cache folder, bounded to ``limit`` bytes."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit

    @classmethod
    def from_settings(cls, settings: Settings) -> ForkCache | None:
        """The configured cache, or None when it is turned off (a size of 0)."""
        limit = settings.fork_cache_bytes
        if limit <= 0:
            return None
        return cls(settings.fork_cache_folder, limit)

    # -- locking ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # releases the flock

    # -- reading ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self, key: str) -> Iterator[Entry | None]:
        """The entry ``key``, held against removal while the block reads it, and marked
        used; None when there is none."""
        with self._locked(fcntl.LOCK_SH):
            entry = self._entry(self.folder / key)
            if entry is not None:
                now = time.time()
                with contextlib.suppress(FileNotFoundError):
                    os.utime(entry.path / ENTRY_FILE, (now, now))
            yield entry

    def _entry(self, path: Path) -> Entry | None:
        try:
            meta = json.loads((path / ENTRY_FILE).read_text())
            used = (path / ENTRY_FILE).stat().st_mtime
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        return Entry(path.name, path, meta, int(meta.get("size", 0)), used)

    def entries(self) -> list[Entry]:
        """Every complete entry, most recently used first."""
        if not self.folder.is_dir():
            return []
        self.sweep()
        found = []
        with self._locked(fcntl.LOCK_SH):
            for path in self.folder.iterdir():
                if path.name.startswith(".") or not path.is_dir():
                    continue
                entry = self._entry(path)
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda e: e.last_used, reverse=True)

    # -- writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, key: str, meta: dict[str, Any]) -> Iterator[Path]:
        """A temporary folder for the entry ``key``'s data; when the block ends without an
        error, the entry is completed (``entry.json``) and renamed into place, and the
        bound is kept. On an error the folder is removed; on a SIGKILL it is left for
        :meth:`sweep`. Yields a folder in any case (the caller writes the same way)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sweep()
        suffix = f"{key[:16]}-{os.urandom(4).hex()}"
        # Made under a name the sweep does not look at, locked, then given its name: a
        # sweep never meets a temporary folder whose owner file is not locked yet.
        new = self.folder / f"{NEW_PREFIX}{suffix}"
        new.mkdir()
        owner = os.open(new / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(owner, fcntl.LOCK_EX)  # held until this process ends or commits
        temp = self.folder / f"{TEMP_PREFIX}{suffix}"
        os.rename(new, temp)
        try:
            yield temp
            os.unlink(temp / OWNER_FILE)
            size = _folder_size(temp)
            full = {**meta, "key": key, "size": size, "created": time.time()}
            (temp / ENTRY_FILE).write_text(json.dumps(full, indent=1, default=str) + "\n")
            self._commit(temp, key, size)
        finally:
            os.close(owner)
            shutil.rmtree(temp, ignore_errors=True)

    def _commit(self, temp: Path, key: str, size: int) -> None:
        if size > self.limit:
            return  # larger than the whole cache: not kept
        with self._locked(fcntl.LOCK_EX):
            self._evict(self.limit - size, keep=key)
            try:
                os.rename(temp, self.folder / key)
            except OSError as exc:
                # Another fork of the same data completed the same entry first.
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise

    def _evict(self, room: int, keep: str = "") -> list[Entry]:
        """Remove least recently used entries until the rest take at most ``room`` bytes
        (called with the exclusive lock held)."""
        found = []
        for path in self.folder.iterdir():
            if path.name.startswith(".") or path.name == keep:
                continue
            entry = self._entry(path)
            if entry is not None:
                found.append(entry)
        found.sort(key=lambda e: e.last_used)  # oldest use first
        total = sum(e.size for e in found)
        removed = []
        for entry in found:
            if total <= room:
                break
            shutil.rmtree(entry.path, ignore_errors=True)
            total -= entry.size
            removed.append(entry)
        return removed

    def sweep(self) -> list[str]:
        """Remove the temporary folders of writers that are gone (their ``owner`` flock is
        free): what a fork killed half way through filling an entry left."""
        removed: list[str] = []
        if not self.folder.is_dir():
            return removed
        for path in self.folder.glob(f"{NEW_PREFIX}*"):  # killed between mkdir and rename
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime > 3600:
                    shutil.rmtree(path, ignore_errors=True)
        for path in self.folder.glob(f"{TEMP_PREFIX}*"):
            try:
                fd = os.open(path / OWNER_FILE, os.O_RDWR)
            except FileNotFoundError:
                # Not yet locked, or committing: only a folder left a while ago is stale.
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - path.stat().st_mtime > 3600:
                        shutil.rmtree(path, ignore_errors=True)
                        removed.append(path.name)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            finally:
                os.close(fd)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        return removed

    def remove(self, key: str) -> None:
        """Remove one entry (one that failed its verification)."""
        with self._locked(fcntl.LOCK_EX):
            shutil.rmtree(self.folder / key, ignore_errors=True)

    # -- pruning ----------------------------------------------------------------------------

    def prune(
        self,
        *,
        everything: bool = False,
        older_than: float | None = None,
        to_size: int | None = None,
        dry_run: bool = False,
    ) -> list[Entry]:
        """Remove entries: all of them, those unused for ``older_than`` seconds, and/or the
        least recently used until the rest fit ``to_size`` bytes; returns what went."""
        entries = self.entries()
        chosen: dict[str, Entry] = {}
        now = time.time()
        for entry in entries:
            if everything or (older_than is not None and now - entry.last_used > older_than):
                chosen[entry.key] = entry
        if to_size is not None:
            left = [e for e in entries if e.key not in chosen]
            total = sum(e.size for e in left)
            for entry in reversed(left):  # least recently used first
                if total <= to_size:
                    break
                chosen[entry.key] = entry
                total -= entry.size
        if not dry_run and chosen:
            with self._locked(fcntl.LOCK_EX):
                for entry in chosen.values():
                    shutil.rmtree(entry.path, ignore_errors=True)
        return sorted(chosen.values(), key=lambda e: e.last_used)
