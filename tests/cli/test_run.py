"""`omnilab run`, `omnilab runs ls`, `omnilab runs show`: the main job, end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support import EXPERIMENTS, HELLO, run_cli


def test_hello_runs_records_and_cleans_up(workdir: Path) -> None:
    result = run_cli("run", HELLO, "-p", "n_items=40")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "succeeded" in out
    for key in ("redis_keys", "postgres_rows", "qdrant_points", "nearest_is_self"):
        assert key in out
    assert "top_score" in out and "postgres_ms" in out  # metrics table
    # Progress went to stderr, one line for the runtime decision among them.
    assert "runtime: local" in result.stderr
    assert "redis: ready at redis://:****@127.0.0.1:" in result.stderr
    # A Qdrant binary is on PATH (CI: ../shared/bin): a real server, said so.
    assert "  qdrant: starting qdrant 1.19.0 server (" in result.stderr
    run_id = out.split()[1]
    assert len(run_id) == 32

    # The stack is gone: no state, no data directory.
    assert not list((workdir / "state").glob("stacks/*.json"))
    assert not list(Path(tempfile.gettempdir()).glob(f"omnilab-{run_id[:8]}-*"))
    artifacts = workdir / "runs" / run_id / "artifacts"
    assert (artifacts / "neighbours.txt").is_file()
    assert (workdir / "runs" / run_id / "logs" / "redis.log").is_file()

    listing = run_cli("runs", "ls")
    assert listing.returncode == 0
    assert run_id[:8] in listing.stdout and "Hello" in listing.stdout

    shown = run_cli("runs", "show", run_id[:6], "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["id"] == run_id
    assert record["status"] == "succeeded"
    assert record["params"] == {"n_items": 40, "dim": 8, "seed": 0}
    assert record["summary"]["redis_keys"] == 40
    assert record["summary"]["postgres_rows"] == 40
    assert record["summary"]["qdrant_points"] == 40
    assert record["summary"]["nearest_is_self"] is True
    assert record["metrics"]["top_score"]["count"] == 3
    assert record["metrics"]["top_score"]["last_step"] == 2
    assert {a["path"] for a in record["artifacts"]} == {"neighbours.txt"}
    env = record["environment"]
    assert env["python"] and env["packages"]["omnilab"]
    assert env["packages"]["qdrant-client"]
    services = record["stack"]["services"]
    assert services["redis"]["version"].startswith(("valkey", "redis"))
    assert services["postgres"]["version"].startswith("postgres")
    qdrant = services["qdrant"]
    assert qdrant["kind"] == "process" and qdrant["version"] == "qdrant 1.19.0"
    assert qdrant["url"].startswith("http://127.0.0.1:")
    timings = record["timings"]
    assert timings["stack_start_s"] > 0 and timings["total_s"] >= timings["experiment_s"]
    # No secret anywhere in the record.
    assert "****" in services["redis"]["url"]


def test_json_output_is_the_whole_run(workdir: Path) -> None:
    result = run_cli("run", f"{EXPERIMENTS / 'several.py'}:Second", "-p", "label=hi", "--json")
    assert result.returncode == 0, result.stderr
    # stdout is the JSON alone; what the experiment and its child printed is on stderr
    # and in the run's log.
    run = json.loads(result.stdout)
    for line in ("second: label hi", "second: a child's line"):
        assert line in result.stderr
        assert line not in result.stdout
    assert "second: label hi" in (workdir / "runs" / run["id"] / "logs" / "output.log").read_text()
    assert run["status"] == "succeeded"
    assert run["summary"] == {
        "which": "second",
        "label": "hi",
        "sizes": [1, 2],
        "ratio": 0.5,
        "flag": False,
    }
    assert run["runtime"] == "local"


def test_experiment_that_raises_exits_1_with_its_own_traceback() -> None:
    result = run_cli("run", EXPERIMENTS / "boom.py", "--json")
    assert result.returncode == 1
    run = json.loads(result.stdout)
    assert run["status"] == "failed"
    error = run["error"]
    assert "ZeroDivisionError: division by zero" in error
    assert 'boom.py", line 17, in run' in error and "in divide" in error
    assert "runner.py" not in error  # omnilab's own frames are not the user's concern
    assert "ZeroDivisionError" in result.stderr  # shown as well as stored
    assert run["metrics"]["reached"]["last"] == 1.0  # metrics logged before the error kept


def test_git_commit_is_recorded_inside_a_repository(workdir: Path) -> None:
    repo = workdir / "repo"
    repo.mkdir()
    shutil.copy(HELLO, repo / "hello.py")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "hello.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "hello"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = run_cli("run", repo / "hello.py", "-p", "n_items=5", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["git_commit"] == commit
    assert run["environment"]["git"]["dirty"] is False


def test_runs_ls_filters(workdir: Path) -> None:
    assert run_cli("run", f"{EXPERIMENTS / 'several.py'}:First").returncode == 0
    assert run_cli("run", EXPERIMENTS / "boom.py").returncode == 1
    failed = json.loads(run_cli("runs", "ls", "--status", "failed", "--json").stdout)
    assert failed and all(r["status"] == "failed" for r in failed)
    firsts = json.loads(run_cli("runs", "ls", "-e", "First", "-n", "1", "--json").stdout)
    assert len(firsts) == 1 and firsts[0]["experiment"] == "First"


def test_help_teaches() -> None:
    result = run_cli("run", "--help")
    assert result.returncode == 0
    for text in ("FILE[:CLASS]", "-p", "--runtime", "--keep", "--json", "Examples"):
        assert text in result.stdout
