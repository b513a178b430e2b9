"""An n-qubit GHZ state on Qiskit Aer: only |00..0> and |11..1> may ever be measured.

    omnilab run experiments/aer_ghz.py
    omnilab run experiments/aer_ghz.py -p n_qubits=24 -p method=statevector
    omnilab run experiments/aer_ghz.py --gpu          # refuse to run without a GPU

Runs on the GPU when qiskit-aer-gpu and a GPU are there, else on the CPU (the run says
which); QISKIT_AER_USE_GPU=1 requires the GPU, 0 forbids it.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from qiskit import QuantumCircuit

from omnilab import Experiment, Params
from omnilab.workloads.aer import Aer


def ghz(n: int) -> QuantumCircuit:
    circuit = QuantumCircuit(n, name=f"ghz-{n}")
    circuit.h(0)
    for qubit in range(n - 1):
        circuit.cx(qubit, qubit + 1)
    circuit.measure_all()
    return circuit


class AerGhz(Experiment):
    """Prepare and measure an n-qubit GHZ state; check its two outcomes, near half each."""

    gpu = "auto"

    class Params(Params):
        n_qubits: int = Field(12, ge=2, le=1000)
        shots: int = Field(4000, ge=100)
        seed: int = 1234
        method: Literal["automatic", "statevector", "matrix_product_state", "stabilizer"] = (
            "automatic"
        )
        precision: Literal["double", "single"] = "double"

    def run(self, ctx):
        p = ctx.params
        aer = Aer(ctx, method=p.method, precision=p.precision, seed=p.seed)
        job = aer.run(ghz(p.n_qubits), shots=p.shots, name="ghz")
        counts = job.counts[0]
        zeros, ones = "0" * p.n_qubits, "1" * p.n_qubits
        p_zeros = counts.get(zeros, 0) / p.shots
        p_ones = counts.get(ones, 0) / p.shots
        other = p.shots - counts.get(zeros, 0) - counts.get(ones, 0)
        # Binomial spread of p_zeros around 1/2; 4 sigma makes a false alarm ~1 in 16,000.
        sigma = math.sqrt(0.25 / p.shots)
        ctx.log_metrics({"p_all_zeros": p_zeros, "p_all_ones": p_ones})
        return {
            "n_qubits": p.n_qubits,
            "shots": p.shots,
            "p_all_zeros": p_zeros,
            "p_all_ones": p_ones,
            "other_outcomes": other,
            "only_ghz_outcomes": other == 0,
            "balanced": abs(p_zeros - 0.5) <= 4 * sigma,
            "device": job.device,
            "method": job.methods[0],
            "seed": job.seed_simulator,
            "shots_per_s": job.shots_per_s,
            "aer": job.versions,
        }
