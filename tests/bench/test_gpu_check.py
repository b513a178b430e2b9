"""bench/gpu_check.py's CPU paths, so the script is known to work before GPU time is
spent on it (CI has no GPU; the GPU parts run only where one is at hand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

SCRIPT = ROOT / "bench" / "gpu_check.py"


def _check(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=out.parent,
    )


def test_cpu_only_runs_every_part_that_needs_no_gpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _check(out, "--cpu-only", "--qubits", "6", "8", "--cpu-max-qubits", "8")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    parts = report["parts"]
    assert parts["detect"]["host_gpus"] == []
    assert parts["aer_info"]["auto"]["exit"] == 0
    assert parts["aer_info"]["device"] == "CPU"
    rows = parts["timings"]["rows"]
    # GHZ and quantum volume, 2 sizes, 2 precisions, each through both routes.
    assert {(r["circuit"], r["qubits"], r["precision"]) for r in rows} == {
        (c, n, p) for c in ("ghz", "qv") for n in (6, 8) for p in ("single", "double")
    }
    assert all(r["device"] == "CPU" and r["aer_s"] > 0 and r["omnilab_s"] > 0 for r in rows)
    guard = parts["guard"]
    assert guard["refused"] is True and guard["seconds"] < 5
    assert "statevector simulation of" in guard["message"]
    assert parts["slots"]["skipped"].startswith("--cpu-only")
    summary = (out / "summary.txt").read_text()
    assert "memory guard:" in summary and "refused" in summary
    assert "not checked: the docker runtime's GPU paths" in summary
    assert summary == done.stdout


def test_without_a_gpu_the_gpu_run_reports_problems(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _check(
        out, "--parts", "detect", "aer_info", "timings", "--qubits", "4", "--cpu-max-qubits", "4"
    )
    assert done.returncode == 1
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["parts"]["detect"]["problem"].startswith("no GPU detected")
    assert "would not use the GPU" in report["parts"]["aer_info"]["problem"]
    assert report["parts"]["aer_info"]["gpu"]["exit"] == 2  # `omnilab aer info --gpu`
    timings = report["parts"]["timings"]
    assert timings["problem"].startswith("Aer has no GPU device here")
    assert {r["device"] for r in timings["rows"]} == {"CPU"}  # the rest still measured
    assert "PROBLEM detect" in done.stdout
