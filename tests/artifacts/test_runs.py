"""Runs and their files in an artifact store: a real S3 server (Garage), runs made with
``omnilab run`` as a user makes them, the objects looked at directly with boto3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from omnilab import ChecksumMismatch, Run
from omnilab.artifacts import BadArtifactPath, UnknownArtifact
from tests.support import run_cli
from tests.support.artifacts import (
    CURVE,
    WRITER,
    blob,
    forget_locally,
    run_writer,
    sha256,
)
from tests.support.garage_server import BUCKET, S3Artifacts


def test_a_run_uploads_its_artifacts_and_log_with_their_checksums(
    s3_artifacts: S3Artifacts, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_writer("files=3", "size=300000")
    run_id = run["id"]
    assert run["status"] == "succeeded"
    assert run["artifacts_url"] == s3_artifacts.url
    recorded = {a["path"]: a for a in run["artifacts"]}
    assert set(recorded) == {
        "plots/curve.csv",
        "blob.bin",
        "many/0000.txt",
        "many/0001.txt",
        "many/0002.txt",
    }
    local = Path(run["run_dir"])
    for path, artifact in recorded.items():
        stored = s3_artifacts.object(run_id, f"artifacts/{path}")
        assert stored == (local / "artifacts" / path).read_bytes(), path
        assert sha256(stored) == artifact["sha256"] and len(stored) == artifact["size"], path
    assert s3_artifacts.object(run_id, "artifacts/blob.bin") == blob(300000)
    log = s3_artifacts.object(run_id, "logs/output.log")
    assert log == (local / "logs" / "output.log").read_bytes()
    assert b"line 0\nline 1\nline 2\n" in log
    upload = run["artifacts_upload"]
    assert upload["files"] == 5 and upload["bytes"] == sum(a["size"] for a in run["artifacts"])
    assert upload["log"] == {"size": len(log), "sha256": sha256(log)}
    assert "uploading 5 artifact(s)" in run["_stderr"]

    # Read back from the store alone, the setting changed since: the record says where.
    forget_locally(run)
    monkeypatch.setenv("OMNILAB_ARTIFACTS_URL", str(workdir / "elsewhere"))
    again = Run.load(run_id)
    assert again.artifacts_url == s3_artifacts.url
    assert again.artifact("plots/curve.csv") == CURVE
    with again.open("blob.bin") as fh:
        assert fh.read(10) == blob(10)
        assert fh.read() == blob(300000)[10:]
    with pytest.raises(UnknownArtifact, match=r"has no artifact 'nope\.txt'"):
        again.artifact("nope.txt")
    for bad in ("../logs/output.log", "/etc/passwd", "a/../../b", "", "a\\b"):
        with pytest.raises(BadArtifactPath):
            again.artifact(bad)

    # `omnilab runs get`: one, to a file or stdout; every one, to a folder.
    got = run_cli("runs", "get", run_id[:10], "plots/curve.csv", "-o", workdir / "c.csv")
    assert got.returncode == 0, got.stderr
    assert (workdir / "c.csv").read_bytes() == CURVE
    piped = run_cli("runs", "get", run_id, "plots/curve.csv", "-o", "-")
    assert piped.returncode == 0 and piped.stdout == CURVE.decode()
    every = run_cli("runs", "get", run_id, "-o", workdir / "all")
    assert every.returncode == 0, every.stderr
    assert "saved 5 artifact(s)" in every.stderr
    assert (workdir / "all" / "many" / "0002.txt").read_text() == "file 2\n"
    assert (workdir / "all" / "blob.bin").read_bytes() == blob(300000)
    unknown = run_cli("runs", "get", run_id, "nope.txt")
    assert unknown.returncode == 2 and "has no artifact 'nope.txt'" in unknown.stderr
    outside = run_cli("runs", "get", run_id, "../logs/output.log")
    assert outside.returncode == 2 and "is not an artifact path" in outside.stderr
    assert "Traceback" not in unknown.stderr + outside.stderr


def test_a_failed_run_uploads_too(s3_artifacts: S3Artifacts) -> None:
    run = run_writer("fail=true", expect=1)
    assert run["status"] == "failed"
    assert run["artifacts_url"] == s3_artifacts.url
    assert s3_artifacts.object(run["id"], "artifacts/plots/curve.csv") == CURVE
    log = s3_artifacts.object(run["id"], "logs/output.log")
    assert b"RuntimeError: failed on purpose" in log
    assert run["artifacts_upload"]["log"]["sha256"] == sha256(log)


def test_a_changed_object_is_refused_on_download(s3_artifacts: S3Artifacts, workdir: Path) -> None:
    run = run_writer()
    key = s3_artifacts.key(run["id"], "artifacts/blob.bin")
    s3_artifacts.server.client().put_object(Bucket=BUCKET, Key=key, Body=b"tampered")
    got = run_cli("runs", "get", run["id"], "blob.bin", "-o", workdir / "blob.bin")
    assert got.returncode == 1
    assert "differs from the recorded" in got.stderr and "Traceback" not in got.stderr
    assert not (workdir / "blob.bin").exists()
    with pytest.raises(ChecksumMismatch):
        Run.load(run["id"]).artifact("blob.bin")


def test_a_failed_upload_leaves_the_outcome_and_says_where_the_files_are(
    s3_artifacts: S3Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key the server does not know: it names it in its refusal, which must not show.
    wrong_key = "GK0123456789abcdef01234567"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", wrong_key)
    run = run_writer()
    assert run["status"] == "succeeded" and run["error"] is None
    assert run["artifacts_url"] is None
    upload = run["artifacts_upload"]
    assert "failed" in upload["error"] and "AccessDenied" in upload["error"]
    assert upload["local"] == run["run_dir"]
    assert f"the run's files stay in {run['run_dir']}" in run["_stderr"]
    # The files are recorded, and read from the run's folder as before.
    assert {a["path"] for a in run["artifacts"]} == {"plots/curve.csv", "blob.bin"}
    assert Run.load(run["id"]).artifact("plots/curve.csv") == CURVE
    shown = run_cli("runs", "show", run["id"])
    assert "warning: upload to" in shown.stderr
    everything = json.dumps(run) + shown.stdout + shown.stderr
    log = (Path(run["run_dir"]) / "logs" / "output.log").read_text()
    for secret in (wrong_key, s3_artifacts.server.secret):
        assert secret not in everything + log
        assert secret[4:16] not in everything + log


def test_credentials_never_show(s3_artifacts: S3Artifacts) -> None:
    server = s3_artifacts.server
    run = run_writer()
    shown = run_cli("runs", "show", run["id"], "--json")
    config = run_cli("config", "--json")
    assert config.returncode == 0, config.stderr
    settings = json.loads(config.stdout)["settings"]
    assert settings["artifacts_url"]["value"] == s3_artifacts.url
    assert settings["artifacts_url"]["variable"] == "OMNILAB_ARTIFACTS_URL"
    log = s3_artifacts.object(run["id"], "logs/output.log").decode()
    everything = json.dumps(run) + shown.stdout + shown.stderr + config.stdout + log
    for secret in (server.key_id, server.secret):
        assert secret not in everything


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("gs://bucket/runs", "gs:// is not a store omnilab knows"),
        ("s3://", "no bucket"),
        ("s3:///runs", "no bucket"),
        ("s3://Not_A_Bucket/x", "is not a bucket name"),
        ("s3://AKIAEXAMPLE:verysecretvalue@bucket/x", "no credentials in the URL"),
        ("s3://bucket/x?region=eu", "no query"),
        ("file://relative/x", "needs an absolute path"),
    ],
)
def test_a_bad_url_is_refused_before_anything_starts(url: str, said: str, workdir: Path) -> None:
    done = run_cli("run", WRITER, env={"OMNILAB_ARTIFACTS_URL": url})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "OMNILAB_ARTIFACTS_URL" in lines[0] and said in lines[0]
    assert "verysecretvalue" not in done.stderr
    assert not (workdir / "runs").exists()


def test_an_s3_url_without_boto3_says_what_to_install(workdir: Path) -> None:
    hide = workdir / "no-boto3"
    hide.mkdir()
    # What a Python without boto3 does on `import boto3`: ImportError.
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['boto3'] = None\n")
    path = os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])
    done = run_cli(
        "run",
        WRITER,
        env={"OMNILAB_ARTIFACTS_URL": "s3://bucket/runs", "PYTHONPATH": path},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: s3://bucket/runs is an S3 store, which needs boto3: pip install 'omnilab[s3]'"
    )


def test_unset_the_files_stay_in_the_run_folder_as_before(workdir: Path) -> None:
    run = run_writer()
    assert run["artifacts_url"] is None and run["artifacts_upload"] is None
    assert "uploading" not in run["_stderr"]
    folder = Path(run["run_dir"])
    assert folder == (workdir / "runs" / run["id"]).resolve()
    assert (folder / "artifacts" / "plots" / "curve.csv").read_bytes() == CURVE
    recorded = {a["path"]: a["sha256"] for a in run["artifacts"]}
    assert recorded["blob.bin"] == sha256(blob(1000))
    loaded = Run.load(run["id"])
    assert loaded.artifact("blob.bin") == blob(1000)
    got = run_cli("runs", "get", run["id"], "blob.bin")
    assert got.returncode == 0 and (workdir / "blob.bin").read_bytes() == blob(1000)
    # Gone from this host's disk: said so, with where the files were kept.
    forget_locally(run)
    missing = run_cli("runs", "get", run["id"], "blob.bin", "-o", workdir / "again.bin")
    assert missing.returncode == 1
    assert "is not on this host" in missing.stderr and "OMNILAB_ARTIFACTS_URL" in missing.stderr


def test_a_shared_folder_gets_a_copy_of_the_files(workdir: Path) -> None:
    shared = workdir / "shared"
    run = run_writer(env={"OMNILAB_ARTIFACTS_URL": str(shared)})
    assert run["artifacts_url"] == str(shared.resolve())
    copied = shared / run["id"]
    assert (copied / "artifacts" / "blob.bin").read_bytes() == blob(1000)
    assert b"line 2" in (copied / "logs" / "output.log").read_bytes()
    forget_locally(run)
    assert Run.load(run["id"]).artifact("plots/curve.csv") == CURVE
    # Naming the runs folder itself is the default: nothing copied, nothing recorded.
    same = run_writer(env={"OMNILAB_ARTIFACTS_URL": str(workdir / "runs")})
    assert same["artifacts_url"] is None and same["artifacts_upload"] is None


def test_deleting_a_run_removes_its_files_from_the_store(
    s3_artifacts: S3Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, deleted = run_writer(), run_writer("files=2")
    client = s3_artifacts.server.client()

    def keys(run_id: str) -> list[str]:
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=s3_artifacts.key(run_id, ""))
        return [o["Key"] for o in listed.get("Contents", [])]

    assert len(keys(deleted["id"])) == 5  # 4 artifacts and the log
    # A store that cannot be reached: the run stays, unless --force.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    refused = run_cli("runs", "delete", deleted["id"], "--yes")
    assert refused.returncode == 1
    assert "the run is kept (--force deletes it anyway)" in refused.stderr
    assert Run.load(deleted["id"]).status == "succeeded"
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_artifacts.server.endpoint)
    done = run_cli("runs", "delete", deleted["id"], "--yes")
    assert done.returncode == 0, done.stderr
    assert f"5 files in {s3_artifacts.url}" in done.stdout
    assert keys(deleted["id"]) == [] and len(keys(kept["id"])) == 3
