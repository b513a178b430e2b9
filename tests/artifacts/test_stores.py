"""The stores themselves, against a real S3 server (Garage) and real folders: what the
runs' tests reach through a run, here with a part size small enough that a file of a few
megabytes goes, and comes back, in parts."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from omnilab.artifacts import (
    ArtifactNotFound,
    ArtifactStoreError,
    ChecksumMismatch,
    FolderStore,
    Wanted,
    store_at,
)
from omnilab.artifacts.s3 import S3Store
from tests.support.garage_server import BUCKET, S3Artifacts

PART = 5 << 20  # S3's smallest part


def _files(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    files = {"big.bin": os.urandom(3 * PART + 12345), "a/small.txt": b"small\n", "empty": b""}
    paths = {}
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        paths[name] = path
    return paths


def test_an_s3_store_sends_and_fetches_files_in_parts_and_checks_them(
    s3_artifacts: S3Artifacts, workdir: Path
) -> None:
    store = S3Store(f"{BUCKET}/{s3_artifacts.prefix}", part_size=PART, concurrency=4)
    files = _files(workdir / "src")
    sent = store.put([(f"r/{name}", path) for name, path in files.items()])
    for stored, (name, path) in zip(sent, files.items(), strict=True):
        content = path.read_bytes()
        assert stored.key == f"r/{name}"
        assert (stored.size, stored.sha256) == (len(content), hashlib.sha256(content).hexdigest())
        assert s3_artifacts.object("r", name) == content
    # Back: the big one in ranges, hashed as they arrive; the others through s3transfer.
    wanted = [
        Wanted(f.key, workdir / "dst" / name, f.sha256, f.size)
        for f, name in zip(sent, files, strict=True)
    ]
    store.get(wanted)
    for name, path in files.items():
        assert (workdir / "dst" / name).read_bytes() == path.read_bytes(), name
    assert not list((workdir / "dst").glob(".*partial"))
    # A copy that is not what was recorded is refused, and not left behind.
    for item in (wanted[0], wanted[1]):
        bad = Wanted(item.key, workdir / "bad" / Path(item.key).name, "0" * 64, item.size)
        with pytest.raises(ChecksumMismatch, match="differs from the recorded"):
            store.get([bad])
        assert not bad.target.exists()
        assert not list(bad.target.parent.glob(".*partial"))
    with store.open("r/a/small.txt") as fh:
        assert fh.read() == b"small\n"
    assert store.read("r/big.bin") == files["big.bin"].read_bytes()
    with pytest.raises(ArtifactNotFound):
        store.open("r/missing")
    with pytest.raises(ArtifactNotFound):
        store.get([Wanted("r/missing", workdir / "m", None, None)])
    with pytest.raises(ArtifactNotFound):
        store.get([Wanted("r/missing-big", workdir / "m", "0" * 64, 2 * PART)])
    link = store.presigned_url("r/a/small.txt", "small.txt", 60)
    assert link is not None and link.startswith(s3_artifacts.server.endpoint)


def test_a_bucket_that_is_not_there_is_one_line_without_credentials(
    s3_artifacts: S3Artifacts, workdir: Path
) -> None:
    store = S3Store("no-such-bucket/x")
    (workdir / "f").write_bytes(b"x")
    with pytest.raises(ArtifactStoreError) as caught:
        store.put([("k", workdir / "f")])
    message = str(caught.value)
    assert message.startswith("upload to s3://no-such-bucket/x/k failed: NoSuchBucket")
    assert "\n" not in message
    assert s3_artifacts.server.key_id not in message and s3_artifacts.server.secret not in message


def test_a_named_profile_alone_reaches_the_store(
    s3_artifacts: S3Artifacts, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As AWS users configure it: `AWS_PROFILE`, its keys in the credentials file, its
    region and endpoint in the config file; none of the variables set."""
    server = s3_artifacts.server
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    config, credentials = workdir / "aws-config", workdir / "aws-credentials"
    config.write_text(
        f"[profile lab]\nregion = {server.env['AWS_REGION']}\nendpoint_url = {server.endpoint}\n"
    )
    credentials.write_text(
        f"[lab]\naws_access_key_id = {server.key_id}\naws_secret_access_key = {server.secret}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "lab")
    (workdir / "f").write_bytes(b"from a profile\n")
    store = S3Store(f"{BUCKET}/{s3_artifacts.prefix}")
    store.put([("p/f", workdir / "f")])
    assert store.read("p/f") == b"from a profile\n"
    assert s3_artifacts.object("p", "f") == b"from a profile\n"


def test_a_folder_store_copies_whole_files_and_never_leads_out(workdir: Path) -> None:
    store = store_at(str(workdir / "store"))
    assert isinstance(store, FolderStore)
    files = _files(workdir / "src")
    sent = store.put([(f"r/{name}", path) for name, path in files.items()])
    assert [f.sha256 for f in sent] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in files.values()
    ]
    assert (workdir / "store" / "r" / "big.bin").read_bytes() == files["big.bin"].read_bytes()
    store.get([Wanted(sent[1].key, workdir / "dst" / "small.txt", sent[1].sha256)])
    assert (workdir / "dst" / "small.txt").read_bytes() == b"small\n"
    with pytest.raises(ChecksumMismatch):
        store.get([Wanted(sent[1].key, workdir / "dst" / "bad.txt", "0" * 64)])
    assert not (workdir / "dst" / "bad.txt").exists()
    (workdir / "outside.txt").write_text("secret")
    os.symlink(workdir / "outside.txt", workdir / "store" / "r" / "link")
    for key in ("r/link", "../outside.txt", "r/missing"):
        with pytest.raises(ArtifactNotFound):
            store.open(key)
    assert store.presigned_url("r/big.bin", "big.bin", 60) is None
