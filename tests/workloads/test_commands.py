"""`omnilab aer info` and `omnilab codegen templates`, run as a user would."""

from __future__ import annotations

import json
from pathlib import Path

from omnilab.workloads.aer_resources import free_memory, max_qubits
from tests.support import run_cli


def test_aer_info_says_the_device_and_what_fits() -> None:
    result = run_cli("aer", "info")
    assert result.returncode == 0, result.stderr
    assert "aer: CPU with qiskit-aer" in result.stdout
    assert "pip install 'omnilab[gpu]'" in result.stdout  # not eaten as markup
    data = json.loads(run_cli("aer", "info", "--json").stdout)
    assert data["device"] == "CPU" and data["package"] == "qiskit-aer"
    # 2^n x 16 bytes within 90% of free memory (which moves a little between calls).
    expected = max_qubits(int(free_memory() * 0.9), "statevector", "double")
    assert abs(data["max_qubits"]["statevector"]["double"] - expected) <= 1
    assert data["max_qubits"]["statevector"]["single"] == (
        data["max_qubits"]["statevector"]["double"] + 1
    )


def test_aer_info_gpu_required_is_refused_in_one_line() -> None:
    result = run_cli("aer", "info", "--gpu")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: gpu=True, but no GPU can be used: qiskit-aer is the CPU build "
        "(pip install 'omnilab[gpu]' replaces it with qiskit-aer-gpu)"
    ]
    env = run_cli("aer", "info", env={"QISKIT_AER_USE_GPU": "1"})
    assert env.returncode == 2 and "QISKIT_AER_USE_GPU=1, but no GPU" in env.stderr


def test_codegen_templates_lists_shows_and_overrides(tmp_path: Path) -> None:
    listed = run_cli("codegen", "templates")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "fix",
        "solve",
        "write_tests",
    ]
    shown = run_cli("codegen", "templates", "solve")
    assert "{{ description }}" in shown.stdout
    mine = tmp_path / "prompts"
    mine.mkdir()
    (mine / "solve.j2").write_text("mine: {{ description }}\n")
    (mine / "haiku.j2").write_text("{{ description }} in 17 syllables\n")
    listed = run_cli(
        "codegen", "templates", env={"OMNILAB_TEMPLATES_DIR": str(mine), "COLUMNS": "300"}
    )
    first, *lines = listed.stdout.splitlines()
    assert first == f"yours: {mine}"  # the folder once, then one short line per template
    rows = dict(line.split(maxsplit=1) for line in lines)
    assert rows == {
        "fix": "shipped",
        "haiku": "yours",
        "solve": "yours (in place of the shipped one)",
        "write_tests": "shipped",
    }
    missing = run_cli("codegen", "templates", "nope")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "error: no prompt template 'nope' (available: fix, solve, write_tests)"
    )
    absent = run_cli("codegen", "templates", "--dir", str(tmp_path / "absent"))
    assert absent.returncode == 2 and "does not exist" in absent.stderr
