"""Qiskit Aer simulations on the GPU or the CPU, checked first and tracked.

::

    from omnilab.workloads.aer import Aer

    class Ghz(Experiment):
        def run(self, ctx):
            aer = Aer(ctx, seed=1234)             # GPU when usable, else CPU (said which)
            result = aer.run([ghz(20)], shots=4000)  # several circuits: one batched job
            return {"counts": result.counts[0], "device": result.device}

The device follows, in order: ``gpu=`` given here; the run's GPU policy (the
experiment's ``gpu`` attribute, ``--gpu/--no-gpu``) when it is True or False;
``QISKIT_AER_USE_GPU`` (1 requires the GPU, 0 refuses it); else the GPU when Aer can use
one. A GPU that is required but unusable is an error, never a silent CPU run.

Before a dense simulation (statevector, density matrix, unitary) the memory it needs
(2^n x 16 bytes for a statevector in double precision, 8 in single) is checked against
free memory or GPU memory, and refused with what would fit.

Each job's timings (transpile, run, shots per second), device, method, seeds and Aer
version are logged as metrics and kept as an artifact ``aer/<name>-<k>.json`` with the
counts.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TextIO

from omnilab.errors import OmnilabError, UsageError
from omnilab.workloads.aer_resources import (
    AerDevice,
    GpuRequest,
    MemoryPlan,
    Precision,
    check_memory,
    choose_device,
)
from omnilab.workloads.settings import get_workload_settings

#: Outcomes kept per circuit in the artifact; the rest are summed as ``other``.
MAX_STORED_OUTCOMES = 4096
METHODS = (
    "automatic",
    "statevector",
    "density_matrix",
    "stabilizer",
    "matrix_product_state",
    "extended_stabilizer",
    "unitary",
    "superop",
)


class AerRunError(OmnilabError):
    """Aer ran the job and reported a failure."""


@dataclass
class AerResult:
    """One batched job: counts per circuit and how they were obtained."""

    name: str
    counts: list[dict[str, int]]
    shots: int
    seed_simulator: int
    seed_transpiler: int
    device: str
    methods: list[str]
    precision: str
    timings: dict[str, float]
    memory: MemoryPlan
    versions: dict[str, str]
    raw: Any = field(default=None, repr=False)

    @property
    def shots_per_s(self) -> float:
        run = self.timings["run_s"]
        return self.shots * len(self.counts) / run if run > 0 else float("inf")

    def probabilities(self, index: int = 0) -> dict[str, float]:
        counts = self.counts[index]
        total = sum(counts.values()) or 1
        return {k: v / total for k, v in counts.items()}

    def to_dict(self) -> dict[str, Any]:
        stored = []
        for counts in self.counts:
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = dict(top[:MAX_STORED_OUTCOMES])
            other = sum(v for _, v in top[MAX_STORED_OUTCOMES:])
            stored.append({"counts": kept, "other": other, "outcomes": len(counts)})
        return {
            "name": self.name,
            "shots": self.shots,
            "circuits": len(self.counts),
            "seed_simulator": self.seed_simulator,
            "seed_transpiler": self.seed_transpiler,
            "device": self.device,
            "methods": self.methods,
            "precision": self.precision,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "shots_per_s": self.shots_per_s,
            "memory": self.memory.to_dict(),
            "versions": self.versions,
            "results": stored,
        }


def _versions(device: AerDevice) -> dict[str, str]:
    versions = {device.package: device.version}
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions["qiskit"] = metadata.version("qiskit")
    return versions


class Aer:
    """A configured ``AerSimulator`` whose jobs are checked, timed and tracked.

    ``target``: the run's ``ctx`` (metrics, artifacts, GPU policy), or None outside runs.
    ``seed``: used for both transpiler and simulator; when None a random one is drawn
    and recorded, so every job can be reproduced.
    """

    def __init__(
        self,
        target: Any = None,
        *,
        gpu: GpuRequest | None = None,
        method: str = "automatic",
        precision: Precision = "double",
        seed: int | None = None,
        shots: int = 1024,
        memory_fraction: float = 0.9,
        options: Mapping[str, Any] | None = None,
        transpile_options: Mapping[str, Any] | None = None,
        progress: TextIO | None = None,
    ) -> None:
        if method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if precision not in ("double", "single"):
            raise UsageError(f"precision must be 'double' or 'single', not {precision!r}")
        if shots < 1:
            raise UsageError(f"shots must be at least 1, not {shots}")
        if not 0 < memory_fraction <= 1:
            raise UsageError(f"memory_fraction must be in (0, 1], not {memory_fraction}")
        self.ctx = target if hasattr(target, "log_metric") else None
        if gpu is None:
            stack = getattr(target, "stack", None)
            policy = getattr(stack, "gpu_policy", "auto")
            gpu = policy if policy in (True, False) else "auto"
        settings = get_workload_settings()
        self.device = choose_device(gpu, settings.aer_use_gpu)
        self.method = method
        self.precision = precision
        self.seed = seed if seed is not None else secrets.randbelow(2**31)
        self.shots = shots
        self.memory_fraction = memory_fraction
        self.options = dict(options or {})
        self.transpile_options = {"optimization_level": 1, **(transpile_options or {})}
        self._jobs = 0
        from qiskit_aer import AerSimulator

        self.simulator = AerSimulator(
            method=method, device=self.device.name, precision=precision, **self.options
        )
        print(f"aer: {self.device.describe()}", file=progress or sys.stderr, flush=True)

    def describe(self) -> dict[str, Any]:
        return {
            **self.device.to_dict(),
            "method": self.method,
            "precision": self.precision,
            "seed": self.seed,
        }

    def check(self, circuits: Sequence[Any]) -> MemoryPlan:
        """The memory check alone (run() does it first): raises AerMemoryError."""
        return check_memory(
            list(circuits), self.method, self.precision, self.device, self.memory_fraction
        )

    def run(
        self,
        circuits: Any,
        *,
        shots: int | None = None,
        seed: int | None = None,
        name: str = "job",
    ) -> AerResult:
        """Transpile and run ``circuits`` (one or several) as one job."""
        from qiskit import QuantumCircuit

        batch = [circuits] if isinstance(circuits, QuantumCircuit) else list(circuits)
        if not batch or not all(isinstance(c, QuantumCircuit) for c in batch):
            raise UsageError("Aer.run needs a QuantumCircuit or a non-empty list of them")
        shots = shots or self.shots
        seed = self.seed if seed is None else seed
        memory = self.check(batch)

        began = time.perf_counter()
        compiled = self._transpile(batch, seed)
        transpiled = time.perf_counter()
        result = self.simulator.run(compiled, shots=shots, seed_simulator=seed).result()
        finished = time.perf_counter()
        if not result.success:
            raise AerRunError(f"aer job {name!r} failed: {result.status}")

        counts = []
        for i, circuit in enumerate(compiled):
            has_clbits = circuit.num_clbits > 0
            counts.append(dict(result.get_counts(i)) if has_clbits else {})
        methods = [r.metadata.get("method", self.method) for r in result.results]
        timings = {
            "transpile_s": transpiled - began,
            "run_s": finished - transpiled,
            "aer_time_taken_s": float(result.time_taken or 0.0),
        }
        job = AerResult(
            name=name,
            counts=counts,
            shots=shots,
            seed_simulator=seed,
            seed_transpiler=seed,
            device=self.device.name,
            methods=methods,
            precision=self.precision,
            timings=timings,
            memory=memory,
            versions=_versions(self.device),
            raw=result,
        )
        self._track(job)
        return job

    def _transpile(self, batch: list[Any], seed: int) -> list[Any]:
        from qiskit import transpile

        # Under the automatic method AerSimulator's target is sized for a statevector in
        # this machine's memory, yet Aer may run wider circuits (stabilizer for Clifford
        # ones): those that use only Aer's own instructions need no transpiling.
        limit = self.simulator.num_qubits
        if limit is not None and max(c.num_qubits for c in batch) > limit:
            supported = set(self.simulator.operation_names) | {"measure", "barrier"}
            if all(set(c.count_ops()) <= supported for c in batch):
                return batch
            raise UsageError(
                f"a circuit is wider than the {limit} qubits Aer's target allows for "
                f"method={self.method!r} here and uses gates that need transpiling; "
                "choose method='matrix_product_state' or 'stabilizer', or fewer qubits"
            )
        transpiled: list[Any] = transpile(
            batch, backend=self.simulator, seed_transpiler=seed, **self.transpile_options
        )
        return transpiled

    def _track(self, job: AerResult) -> None:
        step = self._jobs
        self._jobs += 1
        if self.ctx is None:
            return
        self.ctx.log_metric("aer.transpile_s", job.timings["transpile_s"], step=step)
        self.ctx.log_metric("aer.run_s", job.timings["run_s"], step=step)
        self.ctx.log_metric("aer.shots_per_s", job.shots_per_s, step=step)
        path = self.ctx.artifacts_dir / "aer" / f"{job.name}-{step}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**job.to_dict(), "aer": self.describe()}, indent=1) + "\n")

    def estimate(
        self,
        circuit: Any,
        observables: Any,
        parameter_values: Any = None,
        *,
        precision: float = 0.0,
    ) -> Any:
        """Expectation values with Aer's EstimatorV2: exact (statevector) by default.

        ``parameter_values`` is an array of shape (..., number of parameters): all the
        points are evaluated in one job. Returns the ``evs`` array.
        """
        from qiskit_aer.primitives import EstimatorV2

        self.check([circuit])
        method = "statevector" if self.method == "automatic" else self.method
        estimator = getattr(self, "_estimator", None)
        if estimator is None:
            estimator = EstimatorV2(
                options={
                    "backend_options": {
                        "method": method,
                        "device": self.device.name,
                        "precision": self.precision,
                        **self.options,
                    },
                    "run_options": {"seed": self.seed},
                    "default_precision": precision,
                }
            )
            self._estimator = estimator
        began = time.perf_counter()
        pub = (
            (circuit, observables)
            if parameter_values is None
            else (
                circuit,
                observables,
                parameter_values,
            )
        )
        evs = estimator.run([pub], precision=precision).result()[0].data.evs
        if self.ctx is not None:
            self.ctx.log_metric("aer.estimate_s", time.perf_counter() - began)
        return evs
