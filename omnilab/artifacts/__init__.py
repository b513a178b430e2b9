"""Where runs' artifacts and logs are kept, so that every host can read them.

A run writes into its folder (``runs/<run id>/``) while it runs; when it ends, its
artifacts and its log go to the store ``OMNILAB_ARTIFACTS_URL`` names: unset, they stay
in that folder, as they always did; a folder (one every host mounts); or
``s3://bucket/prefix`` on an S3-compatible server. The run's record keeps where they went
(``runs.artifacts_url``), so they are read from there whatever the setting says later,
by the API, the web UI, ``Run.artifact`` and ``omnilab runs get`` alike.
"""

from __future__ import annotations

import threading
from pathlib import Path

from omnilab.artifacts.base import (
    LOG_PATH,
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreError,
    ArtifactsUrlError,
    BadArtifactPath,
    ChecksumMismatch,
    StoredFile,
    UnknownArtifact,
    Verified,
    Wanted,
    artifact_key,
    check_path,
    file_sha256,
    log_key,
)
from omnilab.artifacts.folder import FolderStore
from omnilab.config import Settings, artifacts_location

__all__ = [
    "LOG_PATH",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactStoreError",
    "ArtifactsUrlError",
    "BadArtifactPath",
    "ChecksumMismatch",
    "FolderStore",
    "StoredFile",
    "UnknownArtifact",
    "Verified",
    "Wanted",
    "artifact_key",
    "check_path",
    "configured",
    "file_sha256",
    "log_key",
    "run_files",
    "run_store",
    "store_at",
]

_stores: dict[str, ArtifactStore] = {}
_lock = threading.Lock()


def store_at(url: str) -> ArtifactStore:
    """The store at ``url`` (as a run's record holds it, or as configured); one per URL
    and process, so its connections are reused from one read to the next."""
    with _lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = _make(url)
        return store


def _make(url: str) -> ArtifactStore:
    try:
        kind, where = artifacts_location(url)
    except ValueError as exc:
        raise ArtifactsUrlError(f"OMNILAB_ARTIFACTS_URL: {exc}") from None
    if kind == "folder":
        return FolderStore(Path(where))
    try:
        from omnilab.artifacts.s3 import S3Store
    except ImportError:
        raise ArtifactsUrlError(
            f"{url} is an S3 store, which needs boto3: pip install 'omnilab[s3]'"
        ) from None

    return S3Store(where)


def configured(settings: Settings) -> ArtifactStore | None:
    """The store new runs upload to, or None when their files stay in their own folder
    (``OMNILAB_ARTIFACTS_URL`` unset, or naming the runs folder itself). Checked before a
    run starts: a bad URL, or an S3 URL without boto3, refuses the run (exit status 2)."""
    if not settings.artifacts_url:
        return None
    store = store_at(settings.artifacts_url)
    if isinstance(store, FolderStore) and store.root == Path(settings.runs_dir).resolve():
        return None
    return store


def run_store(artifacts_url: str | None, run_dir: str | Path | None) -> ArtifactStore | None:
    """Where a recorded run's files are: the store its record names, else its own folder
    (``run_dir``, on the host that ran it); None when it has neither."""
    if artifacts_url:
        return store_at(artifacts_url)
    if run_dir:
        return FolderStore(Path(run_dir).parent)
    return None


def run_files(run_id: str, run_dir: Path) -> list[tuple[str, Path]]:
    """A run's artifacts as (key, local file), in path order: what a store receives."""
    base = run_dir / "artifacts"
    if not base.is_dir():
        return []
    return [
        (f"{run_id}/artifacts/{path.relative_to(base).as_posix()}", path)
        for path in sorted(base.rglob("*"))
        if path.is_file()
    ]
