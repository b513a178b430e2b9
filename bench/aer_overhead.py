"""omnilab's Aer workload against AerSimulator.run called directly, same circuits, same run.

    python bench/aer_overhead.py [--qubits 24] [--depth 10] [--rounds 5] [--shots 1000]

Both arms run inside one real omnilab run (tracking store, metric buffer, artifacts),
alternating, after a warm-up each, on the same 24-qubit circuit (not Clifford, so a
statevector: 2^24 x 16 bytes = 256 MiB):

- direct: ``transpile(circuit, backend=AerSimulator(), seed_transpiler=s,
  optimization_level=1)`` then ``AerSimulator.run(..., shots, seed_simulator=s).result()``;
- omnilab: ``Aer(ctx, seed=s).run(circuit, shots)``: device choice, memory check, the
  same transpile and run, counts, metrics and the JSON artifact.

The figure is end-to-end wall time per job (transpile + run + bookkeeping); the ratio is
omnilab / direct. Goal: <= 1.05 at 24 qubits on the CPU.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import tempfile
import time

from _common import summary, write

from omnilab import Experiment, Params


def layered_circuit(n: int, depth: int, seed: int):  # type: ignore[no-untyped-def]
    """Hadamards, then layers of random RZ/RX rotations and a CNOT brickwork."""
    from qiskit import QuantumCircuit

    rng = random.Random(seed)
    circuit = QuantumCircuit(n, name=f"layered-{n}x{depth}")
    circuit.h(range(n))
    for layer in range(depth):
        for q in range(n):
            circuit.rz(rng.uniform(0, 6.283), q)
            circuit.rx(rng.uniform(0, 6.283), q)
        for q in range(layer % 2, n - 1, 2):
            circuit.cx(q, q + 1)
    circuit.measure_all()
    return circuit


class AerOverhead(Experiment):
    """Alternate direct AerSimulator jobs with omnilab Aer jobs on one circuit."""

    gpu = False

    class Params(Params):
        qubits: int = 24
        depth: int = 10
        rounds: int = 5
        shots: int = 1000
        seed: int = 11

    def run(self, ctx):
        from qiskit import transpile
        from qiskit_aer import AerSimulator

        from omnilab.workloads.aer import Aer

        p = ctx.params
        circuit = layered_circuit(p.qubits, p.depth, p.seed)

        def direct() -> dict[str, float]:
            began = time.perf_counter()
            simulator = AerSimulator()
            compiled = transpile(
                circuit, backend=simulator, seed_transpiler=p.seed, optimization_level=1
            )
            mid = time.perf_counter()
            result = simulator.run(compiled, shots=p.shots, seed_simulator=p.seed).result()
            assert result.success
            result.get_counts(0)
            end = time.perf_counter()
            return {"total": end - began, "transpile": mid - began, "run": end - mid}

        def omnilab_job() -> dict[str, float]:
            began = time.perf_counter()
            job = Aer(ctx, seed=p.seed, progress=io.StringIO()).run(circuit, shots=p.shots)
            end = time.perf_counter()
            return {
                "total": end - began,
                "transpile": job.timings["transpile_s"],
                "run": job.timings["run_s"],
            }

        direct(), omnilab_job()  # warm-up: imports, page cache, Aer's thread pool
        samples: dict[str, list[dict[str, float]]] = {"direct": [], "omnilab": []}
        for _ in range(p.rounds):
            samples["direct"].append(direct())
            samples["omnilab"].append(omnilab_job())
        for runs in samples.values():
            for s in runs:  # per job: what was spent outside transpile and run
                s["extra"] = s["total"] - s["transpile"] - s["run"]
        return {
            arm: {
                part: statistics.median(s[part] for s in runs)
                for part in ("total", "transpile", "run", "extra")
            }
            | {"all_total": [s["total"] for s in runs]}
            for arm, runs in samples.items()
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qubits", type=int, default=24)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))
    os.environ.setdefault("OMNILAB_RUNS_DIR", tempfile.mkdtemp(prefix="omnilab-bench-runs-"))

    import omnilab
    from omnilab.progress import QuietReporter

    print(
        f"Aer overhead: {args.qubits} qubits, depth {args.depth}, {args.shots} shots, "
        f"{args.rounds} rounds, CPU"
    )
    run = omnilab.run(
        AerOverhead,
        {k: getattr(args, k) for k in ("qubits", "depth", "rounds", "shots")},
        runtime="local",
        reporter=QuietReporter(),
    )
    run.raise_for_status()
    result = run.summary
    direct, ours = result["direct"], result["omnilab"]
    ratio = ours["total"] / direct["total"]
    # What each arm spends outside transpile and run (Aer's own work, identical in both):
    # device choice, memory check, results, metrics, artifact. Steadier than the totals on
    # a shared machine, where the run time itself swings with the neighbours' load.
    extra = {"direct": direct["extra"], "omnilab": ours["extra"]}
    added = (extra["omnilab"] - extra["direct"]) / direct["total"]
    for arm, data in (("direct AerSimulator.run", direct), ("omnilab Aer.run", ours)):
        spread = summary(data["all_total"])
        print(
            f"  {arm:24s} median {data['total']:.3f}s (min {spread['min']:.3f}, "
            f"max {spread['max']:.3f}; transpile {data['transpile']:.3f}s, "
            f"run {data['run']:.3f}s)"
        )
    print(f"  ratio omnilab/direct: {ratio:.3f}x  (goal <= 1.05x)")
    print(
        f"  outside transpile+run: direct {extra['direct'] * 1000:.1f} ms, omnilab "
        f"{extra['omnilab'] * 1000:.1f} ms: omnilab adds {added:+.2%} of a direct job"
    )
    path = write(
        "aer_overhead",
        {
            "params": vars(args),
            "statevector_bytes": 2**args.qubits * 16,
            "direct": direct,
            "omnilab": ours,
            "ratio": ratio,
            "outside_transpile_and_run_s": extra,
            "added_fraction": added,
            "goal_ratio": 1.05,
            "run": run.id,
            "load_average_after": os.getloadavg(),
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
