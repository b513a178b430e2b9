"""What every artifact store does, and the names of a run's files in one.

A store holds files under keys. A run's keys are ``<run id>/artifacts/<path>`` and
``<run id>/logs/output.log``: the layout of the run's own folder (``runs/<run id>/``), so
that the folder a run writes into while it runs is itself a store, the one used when
``OMNILAB_ARTIFACTS_URL`` is unset.
"""

from __future__ import annotations

import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from omnilab.errors import OmnilabError, UsageError

#: Where a run's output goes inside its folder and under its key in a store.
LOG_PATH = "logs/output.log"
#: Reads and copies go by pieces of this size.
CHUNK = 1 << 20


class ArtifactError(OmnilabError):
    """An artifact could not be stored or read."""


class ArtifactsUrlError(UsageError):
    """``OMNILAB_ARTIFACTS_URL`` cannot be used here (a bad URL, a library missing)."""


class BadArtifactPath(UsageError):
    """A path that names no file inside a run's artifacts (absolute, ``..``, empty)."""


class ArtifactNotFound(ArtifactError):
    """No such artifact in the store (never uploaded, or removed since)."""


class UnknownArtifact(ArtifactNotFound, UsageError):
    """A path the run has no artifact under: bad input (exit status 2)."""


class ArtifactStoreError(ArtifactError):
    """The store refused or could not be reached; the message holds no credentials."""


class ChecksumMismatch(ArtifactError):
    """What was read is not what was recorded: a changed or damaged copy."""


@dataclass(frozen=True)
class Wanted:
    """One download: the key, where it goes, and (when recorded) its sha256, which the
    copy is checked against, and its size, which spares asking the store for it."""

    key: str
    target: Path
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class StoredFile:
    """A file as a store received it: its key, and the size and sha256 of what was sent."""

    key: str
    size: int
    sha256: str


def check_path(path: str) -> str:
    """``path`` as an artifact's path relative to the run's ``artifacts/``, or
    :class:`BadArtifactPath`: what comes from a URL or a command line must not lead out
    of the run's files (``..``, an absolute path, a backslash, a NUL byte)."""
    parts = PurePosixPath(path).parts if path else ()
    if (
        not path
        or len(path) > 1024
        or path.startswith("/")
        or "\\" in path
        or any(ord(c) < 32 for c in path)
        or any(p in ("..", ".") for p in path.split("/"))
        or "//" in path
        or path.endswith("/")
        or not parts
    ):
        shown = path[:200].encode("unicode_escape").decode("ascii")
        raise BadArtifactPath(f"{shown!r} is not an artifact path (relative, without '..')")
    return path


def artifact_key(run_id: str, path: str) -> str:
    return f"{run_id}/artifacts/{check_path(path)}"


def log_key(run_id: str) -> str:
    return f"{run_id}/{LOG_PATH}"


def file_sha256(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, read once (hashlib lets other threads run meanwhile)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while n := fh.readinto(buffer):
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


class ArtifactStore(ABC):
    """Where runs' artifacts and logs are kept: a folder, or an S3-compatible bucket.

    ``url`` is what a run's record holds (never credentials): read back with
    :func:`omnilab.artifacts.store_at`, it finds the same files from any host that
    reaches the store, whatever ``OMNILAB_ARTIFACTS_URL`` says by then.
    """

    url: str

    @abstractmethod
    def put(self, items: Sequence[tuple[str, Path]]) -> list[StoredFile]:
        """Copy each local file to its key, many at once; returns what was sent, in the
        order given. Raises :class:`ArtifactStoreError` when any could not be."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """The content under ``key``, streamed (:class:`ArtifactNotFound` if none)."""

    @abstractmethod
    def get(self, items: Sequence[Wanted]) -> None:
        """Download each key to its local path, many at once; with a sha256, the copy is
        checked against it (:class:`ChecksumMismatch`, and the copy is removed)."""

    def connect(self) -> None:
        """Make what the first transfer would (an object store's client), ahead of it:
        a worker does it before its run comes, the benchmark before its clock starts."""

    @abstractmethod
    def delete_run(self, run_id: str) -> int:
        """Remove every file of a run (``omnilab runs delete``); how many there were."""

    def read(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def local_path(self, key: str) -> Path | None:
        """The file under ``key`` on this host's disk, for a store that is a folder."""
        return None

    def presigned_url(self, key: str, filename: str, expires_s: int) -> str | None:
        """A URL that downloads ``key`` without credentials for ``expires_s`` seconds, for
        a store that can give one (an object store); None otherwise."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class Verified(io.RawIOBase):
    """A stream whose sha256 is checked once it has been read to its end: whoever reads
    an artifact through ``Run.open`` learns that it changed rather than use it."""

    def __init__(self, raw: BinaryIO, sha256: str, name: str) -> None:
        self._raw = raw
        self._expected = sha256
        self._digest = hashlib.sha256()
        self._name = name
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        n = len(data)
        if n:
            buffer[:n] = data
            self._digest.update(data)
        elif not self._checked:
            self._checked = True
            found = self._digest.hexdigest()
            if found != self._expected:
                raise ChecksumMismatch(
                    f"{self._name}: sha256 {found[:16]}... differs from the recorded "
                    f"{self._expected[:16]}... (changed or damaged in the store)"
                )
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
