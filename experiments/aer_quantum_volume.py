"""Quantum-volume circuits on the ideal (noiseless) Aer simulator: heavy-output test.

    omnilab run experiments/aer_quantum_volume.py
    omnilab run experiments/aer_quantum_volume.py -p n_qubits=8 -p circuits=50

For each random square circuit the heavy outputs are the bitstrings whose ideal
probability is above the median; the ideal probabilities come from qiskit's reference
Statevector, the samples from Aer. A device "has" quantum volume 2^n when the mean
heavy-output probability is above 2/3 with two standard errors to spare; an ideal
simulator sits near (1 + ln 2) / 2 = 0.85.
"""

from __future__ import annotations

import math
import statistics

from pydantic import Field
from qiskit.circuit import library as circuit_library
from qiskit.quantum_info import Statevector

from omnilab import Experiment, Params
from omnilab.workloads.aer import Aer


def heavy_outputs(circuit) -> set[str]:
    probabilities = Statevector(circuit).probabilities_dict()
    median = statistics.median(probabilities.values())
    return {bits for bits, p in probabilities.items() if p > median}


class AerQuantumVolume(Experiment):
    """Heavy-output probability of quantum-volume circuits on the ideal simulator."""

    gpu = "auto"

    class Params(Params):
        n_qubits: int = Field(5, ge=2, le=16)
        #: Layers of random two-qubit blocks; quantum volume uses depth = n_qubits.
        depth: int | None = None
        circuits: int = Field(20, ge=2)
        shots: int = Field(1000, ge=100)
        seed: int = 42

    def run(self, ctx):
        p = ctx.params
        depth = p.depth or p.n_qubits
        models = [
            circuit_library.quantum_volume(p.n_qubits, depth, seed=p.seed + i)
            for i in range(p.circuits)
        ]
        heavy = [heavy_outputs(m) for m in models]
        measured = [m.measure_all(inplace=False) for m in models]
        aer = Aer(ctx, seed=p.seed)
        job = aer.run(measured, shots=p.shots, name="quantum-volume")  # one batched job
        hops = []
        for step, (counts, heavy_set) in enumerate(zip(job.counts, heavy, strict=True)):
            hop = sum(v for bits, v in counts.items() if bits in heavy_set) / p.shots
            hops.append(hop)
            ctx.log_metric("heavy_output_probability", hop, step=step)
        mean = statistics.mean(hops)
        sigma = math.sqrt(mean * (1 - mean) / p.circuits)
        return {
            "n_qubits": p.n_qubits,
            "depth": depth,
            "circuits": p.circuits,
            "shots": p.shots,
            "mean_heavy_output_probability": mean,
            "lower_bound_2_sigma": mean - 2 * sigma,
            "passes": mean - 2 * sigma > 2 / 3,
            "device": job.device,
            "methods": sorted(set(job.methods)),
            "timings": job.timings,
            "aer": job.versions,
        }
