"""Nothing is left behind: on success, on an exception, on Ctrl-C, SIGTERM and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omnilab import Postgres, Redis, stack
from omnilab.progress import QuietReporter
from tests.support import EXPERIMENTS, OMNILAB, run_cli, stack_processes, wait_until


def _start_sleepy(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    """`omnilab run sleepy.py` until the experiment prints; returns the process and run id."""
    proc = subprocess.Popen(
        [str(OMNILAB), "run", str(EXPERIMENTS / "sleepy.py")],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = ""
    run_id = ""
    assert proc.stdout is not None
    while "sleeping" not in seen:
        line = proc.stdout.readline()
        assert line, f"omnilab exited early:\n{seen}"
        seen += line
        if line.startswith("run "):
            run_id = line.split()[1]
    assert stack_processes(), "the stack should be running"
    return proc, run_id


@pytest.mark.parametrize(
    ("sig", "code", "word"), [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_interrupt_tears_down_and_records_cancelled(
    workdir: Path, sig: int, code: int, word: str
) -> None:
    proc, run_id = _start_sleepy(workdir)
    began = time.monotonic()
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, out
    assert time.monotonic() - began < 15
    assert not stack_processes()
    assert not list((workdir / "state").glob("stacks/*.json"))
    record = json.loads(run_cli("runs", "show", run_id, "--json").stdout)
    assert record["status"] == "cancelled"
    assert word in record["error"]


def test_sigkill_of_the_owner_is_cleaned_by_its_watcher(workdir: Path) -> None:
    proc, run_id = _start_sleepy(workdir)
    ids = {s for _, s in stack_processes()}
    proc.kill()
    proc.wait()
    began = time.monotonic()
    assert wait_until(lambda: not [p for p in stack_processes() if p[1] in ids], timeout=10)
    assert time.monotonic() - began < 10
    assert wait_until(lambda: not list((workdir / "state").glob("stacks/*.json")), timeout=5)
    # The run could not record its end; the next look at the runs does.
    record = json.loads(run_cli("runs", "show", run_id, "--json").stdout)
    assert record["status"] == "failed"
    assert "ended without recording an outcome" in record["error"]


def test_sigkill_of_a_python_session_holding_a_stack(workdir: Path) -> None:
    script = workdir / "hold.py"
    script.write_text(
        "import time, omnilab\n"
        "from omnilab import Redis, Postgres\n"
        "with omnilab.stack(Redis(), Postgres()) as s:\n"
        "    s.redis.set('k', 'v')\n"
        "    print('up', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        assert len(stack_processes()) >= 2
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert wait_until(lambda: not stack_processes(), timeout=10)


def test_exception_inside_a_stack_block_tears_down() -> None:
    with (
        pytest.raises(RuntimeError, match="inside"),
        stack(Redis(), Postgres(), reporter=QuietReporter()) as s,
    ):
        s.redis.ping()
        assert stack_processes()
        raise RuntimeError("inside")
    assert not stack_processes()


def test_a_stack_with_no_services_leaves_nothing_to_clean(workdir: Path) -> None:
    """Nothing started, so no folder, state file or watcher that could outlive it."""
    from omnilab.config import get_settings
    from omnilab.runtimes.state import stacks_dir

    states = stacks_dir(get_settings().state_dir)
    temp = set(Path(os.environ.get("TMPDIR", "/tmp")).iterdir())
    with stack(runtime="local", reporter=QuietReporter()) as s:
        assert not list(states.glob("*.json")) and not stack_processes()
        assert set(Path(os.environ.get("TMPDIR", "/tmp")).iterdir()) == temp
        assert s.env == {} and s.describe()["services"] == {}
    assert "start_s" in s.timings and s.timings["teardown_s"] == 0.0
    # One with services still gets its state file (and its watcher) as before.
    with stack(Redis(), runtime="local", reporter=QuietReporter()):
        assert list(states.glob("*.json"))
