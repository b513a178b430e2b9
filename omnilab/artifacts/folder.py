"""A folder as an artifact store: the run's own folder (the default), or a folder every
host mounts (NFS, a cluster file system) named by ``OMNILAB_ARTIFACTS_URL``."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from omnilab.artifacts.base import (
    CHUNK,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreError,
    ChecksumMismatch,
    StoredFile,
    Wanted,
)

#: Copies at once: a shared file system answers each file's metadata over the network.
_THREADS = 8


class FolderStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        """The file of ``key``, never outside the folder (a link may point out of it)."""
        target = (self.root / key).resolve()
        if not target.is_relative_to(self.root):
            raise ArtifactNotFound(f"{key!r} leads out of {self.root}")
        return target

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def delete_run(self, run_id: str) -> int:
        folder = self._path(run_id)
        if folder == self.root or not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            raise ArtifactStoreError(f"cannot remove {folder}: {exc.strerror}") from None
        return count

    def put(self, items: Sequence[tuple[str, Path]]) -> list[StoredFile]:
        def copy(item: tuple[str, Path]) -> StoredFile:
            key, source = item
            target = self.root / key
            size, sha256 = _copy_hashed(source, target)
            return StoredFile(key, size, sha256)

        try:
            with ThreadPoolExecutor(max_workers=_THREADS) as pool:
                return list(pool.map(copy, items))
        except OSError as exc:
            raise ArtifactStoreError(f"copy to {self.root} failed: {exc}") from None

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(f"no file {path}") from None
        except OSError as exc:
            raise ArtifactStoreError(f"cannot read {path}: {exc.strerror}") from None

    def get(self, items: Sequence[Wanted]) -> None:
        def fetch(item: Wanted) -> None:
            source = self.local_path(item.key)
            if source is None:
                raise ArtifactNotFound(f"no file {self.root / item.key}")
            try:
                _, found = _copy_hashed(source, item.target)
            except OSError as exc:
                raise ArtifactStoreError(f"copy of {source} failed: {exc}") from None
            if item.sha256 is not None and found != item.sha256:
                item.target.unlink(missing_ok=True)
                raise ChecksumMismatch(
                    f"{item.key}: sha256 {found[:16]}... differs from the recorded "
                    f"{item.sha256[:16]}... (changed or damaged in {self.root})"
                )

        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            for _ in pool.map(fetch, items):
                pass


def _copy_hashed(source: Path, target: Path) -> tuple[int, str]:
    """Copy ``source`` to ``target`` through a temporary file renamed into place (a reader
    never sees half a file), hashing what is copied; its size and sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(partial, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        shutil.copymode(source, partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return size, digest.hexdigest()
