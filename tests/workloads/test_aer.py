"""The Qiskit Aer workload on the CPU (the GPU path needs a GPU machine; see
docs/benchmarks.md): device choice said and enforced, memory refused before it runs out,
results reproducible from their seeds, everything tracked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from qiskit import QuantumCircuit

from omnilab import UsageError
from omnilab.workloads.aer import Aer
from omnilab.workloads.aer_resources import (
    AerMemoryError,
    AerUnavailable,
    choose_device,
    free_memory,
)
from tests.support import ROOT, run_cli

EXPERIMENTS = ROOT / "experiments"


def ghz(n: int) -> QuantumCircuit:
    circuit = QuantumCircuit(n)
    circuit.h(0)
    for q in range(n - 1):
        circuit.cx(q, q + 1)
    circuit.measure_all()
    return circuit


def dense(n: int) -> QuantumCircuit:
    """A circuit that is not Clifford, so Aer's automatic method needs a statevector."""
    circuit = QuantumCircuit(n)
    circuit.h(range(n))
    circuit.t(range(n))
    circuit.measure_all()
    return circuit


def test_ghz_experiment(workdir: Path) -> None:
    result = run_cli(
        "run", EXPERIMENTS / "aer_ghz.py", "--json", "-p", "n_qubits=20", "-p", "method=statevector"
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    summary = run["summary"]
    assert summary["only_ghz_outcomes"] and summary["balanced"]
    assert summary["other_outcomes"] == 0
    assert summary["p_all_zeros"] + summary["p_all_ones"] == 1.0
    assert (summary["device"], summary["method"]) == ("CPU", "statevector")
    assert "aer: CPU with qiskit-aer" in result.stderr and "no GPU:" in result.stderr
    assert {"aer.transpile_s", "aer.run_s", "aer.shots_per_s"} <= set(run["metrics"])
    artifact = Path(run["run_dir"]) / "artifacts" / "aer" / "ghz-0.json"
    saved = json.loads(artifact.read_text())
    assert saved["seed_simulator"] == 1234 and saved["shots"] == 4000
    assert saved["versions"]["qiskit-aer"] and saved["aer"]["device"] == "CPU"
    assert saved["memory"]["qubits"] == 20 and saved["memory"]["needed_bytes"] == 2**20 * 16
    assert sum(saved["results"][0]["counts"].values()) == 4000
    assert any(a["path"] == "aer/ghz-0.json" for a in run["artifacts"])


def test_quantum_volume_heavy_outputs_on_the_ideal_simulator(workdir: Path) -> None:
    result = run_cli("run", EXPERIMENTS / "aer_quantum_volume.py", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    summary = run["summary"]
    assert summary["passes"], summary
    assert 0.75 < summary["mean_heavy_output_probability"] < 0.95
    assert summary["methods"] == ["statevector"]
    assert run["metrics"]["heavy_output_probability"]["count"] == 20
    assert run["metrics"]["aer.run_s"]["count"] == 1  # the 20 circuits ran as one job


@pytest.mark.parametrize(
    ("n_qubits", "optimiser", "exact"),
    [(6, "lbfgs", -7.296229810558756), (4, "adam", -4.758770483143635)],
)
def test_vqe_with_torch_reaches_exact_diagonalisation(
    workdir: Path, n_qubits: int, optimiser: str, exact: float
) -> None:
    result = run_cli(
        "run", EXPERIMENTS / "vqe_torch.py", "--json",
        "-p", f"n_qubits={n_qubits}", "-p", f"optimiser={optimiser}",
        "-p", "steps=" + ("300" if optimiser == "adam" else "100"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    summary = run["summary"]
    assert summary["within_tolerance"], summary
    assert abs(summary["final_energy"] - summary["exact_energy"]) <= 1e-3
    assert summary["exact_energy"] == pytest.approx(exact, abs=1e-9)
    assert summary["optimiser"].lower().startswith(f"torch.optim.{optimiser}")
    assert run["metrics"]["energy"]["count"] == summary["energy_evaluations"]


def test_gpu_required_without_a_gpu_is_refused(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Required by the run: the stack refuses before anything starts.
    result = run_cli("run", EXPERIMENTS / "aer_ghz.py", "--gpu")
    assert result.returncode == 2
    assert "gpu=True, but this host has no usable GPU" in result.stderr
    # Required from Aer itself: never a silent CPU run.
    with pytest.raises(AerUnavailable, match=r"gpu=True, but no GPU can be used: qiskit-aer is"):
        Aer(gpu=True)
    # The production team's switch makes "auto" a requirement too.
    result = run_cli("run", EXPERIMENTS / "aer_ghz.py", env={"QISKIT_AER_USE_GPU": "1"})
    assert result.returncode == 1
    assert "QISKIT_AER_USE_GPU=1, but no GPU can be used" in result.stderr
    assert choose_device("auto", "0").reason == "GPU not wanted (QISKIT_AER_USE_GPU=0)"
    assert choose_device(False, "1").name == "CPU"  # an explicit choice wins
    with pytest.raises(UsageError, match="QISKIT_AER_USE_GPU='maybe'"):
        choose_device("auto", "maybe")


def test_the_run_gpu_policy_reaches_aer(workdir: Path) -> None:
    result = run_cli("run", EXPERIMENTS / "aer_ghz.py", "--no-gpu", "--json")
    assert result.returncode == 0, result.stderr
    assert "GPU not wanted (gpu=False)" in result.stderr


def test_a_statevector_too_large_is_refused_with_what_fits() -> None:
    budget = free_memory() * 0.9
    # The smallest qubit count whose statevector does not fit in double precision.
    n = math.floor(math.log2(budget / 16)) + 1
    aer = Aer(seed=1)
    with pytest.raises(AerMemoryError) as refused:
        aer.run(dense(n))
    message = str(refused.value)
    assert f"statevector simulation of {n} qubits needs" in message
    assert f"2^{n} x 16 bytes, double precision" in message
    assert f"at most {n - 1} qubits in double precision" in message
    if 2**n * 8 <= budget:
        assert "precision='single'" in message and "fits" in message
    assert "method='matrix_product_state'" in message
    # Far beyond: single precision is no way out either.
    with pytest.raises(AerMemoryError, match="precision='single' would still need"):
        aer.run(dense(n + 4))
    with pytest.raises(AerMemoryError, match="density_matrix simulation of"):
        Aer(method="density_matrix").run(dense(n // 2 + 1))


def test_what_the_refusal_suggests_does_run() -> None:
    n = 40  # 16 TiB as a statevector
    with pytest.raises(AerMemoryError):
        Aer(method="statevector").run(ghz(n))
    job = Aer(method="matrix_product_state", seed=3).run(ghz(n), shots=500)
    assert set(job.counts[0]) <= {"0" * n, "1" * n}
    assert job.methods == ["matrix_product_state"]
    # Aer's automatic method runs a Clifford circuit as stabilizer: no dense state.
    automatic = Aer(seed=3).run(ghz(n), shots=500)
    assert automatic.methods == ["stabilizer"] and automatic.memory.method is None


def test_seeds_reproduce_counts_and_are_always_recorded() -> None:
    circuits = [dense(6), ghz(5)]
    first = Aer(seed=99).run(circuits, shots=3000)
    again = Aer(seed=99).run(circuits, shots=3000)
    assert first.counts == again.counts and len(first.counts) == 2
    unseeded = Aer().run(circuits, shots=3000)
    replay = Aer(seed=unseeded.seed_simulator).run(circuits, shots=3000)
    assert replay.counts == unseeded.counts
    assert unseeded.timings["run_s"] > 0 and unseeded.shots_per_s > 0


def test_exact_expectation_values() -> None:
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp

    theta = Parameter("theta")
    circuit = QuantumCircuit(1)
    circuit.ry(theta, 0)
    angles = [[0.0], [0.3], [math.pi / 2], [2.0]]
    values = Aer(seed=0).estimate(circuit, SparsePauliOp("Z"), angles)
    assert values == pytest.approx([math.cos(a[0]) for a in angles], abs=1e-12)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(UsageError, match="method must be one of"):
        Aer(method="tensor_network_magic")
    with pytest.raises(UsageError, match="precision must be"):
        Aer(precision="half")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="shots must be at least 1"):
        Aer(shots=0)
    with pytest.raises(UsageError, match="needs a QuantumCircuit"):
        Aer().run([])
