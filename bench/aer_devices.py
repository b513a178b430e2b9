"""Statevector circuits from 20 to 30 qubits on the GPU against the CPU, same circuits.

    python bench/aer_devices.py [--qubits 20 22 24 26 28 30] [--depth 10] [--shots 1000]

Needs qiskit-aer-gpu and a GPU (``omnilab aer info`` must say GPU); without them it
stops at once with the reason. The circuit is bench/aer_overhead.py's (random RZ/RX
layers and a CNOT brickwork, not Clifford). Each size runs once per device after a
warm-up on the smallest; sizes whose statevector does not fit a device's free memory
are refused by omnilab's memory check and reported as such. Prints GPU/CPU speed-ups.
"""

from __future__ import annotations

import argparse
import io
import time

from _common import write
from aer_overhead import layered_circuit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qubits", type=int, nargs="+", default=[20, 22, 24, 26, 28, 30])
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--shots", type=int, default=1000)
    args = parser.parse_args()

    from omnilab.workloads.aer import Aer
    from omnilab.workloads.aer_resources import AerMemoryError, AerUnavailable

    try:
        gpu = Aer(gpu=True, seed=5, progress=io.StringIO())
    except AerUnavailable as exc:
        raise SystemExit(f"aer_devices: {exc}") from None
    cpu = Aer(gpu=False, seed=5, progress=io.StringIO())
    print(f"GPU: {gpu.device.describe()}")
    warm = layered_circuit(min(args.qubits), args.depth, 5)
    gpu.run(warm, shots=args.shots), cpu.run(warm, shots=args.shots)
    rows = []
    for n in args.qubits:
        circuit = layered_circuit(n, args.depth, 5)
        row: dict[str, float | str | int] = {"qubits": n}
        for name, aer in (("gpu", gpu), ("cpu", cpu)):
            began = time.perf_counter()
            try:
                job = aer.run(circuit, shots=args.shots)
            except AerMemoryError as exc:
                row[name] = f"refused: {exc}"
                continue
            row[name] = time.perf_counter() - began
            row[f"{name}_run_s"] = job.timings["run_s"]
        speedup = (
            row["cpu"] / row["gpu"]
            if isinstance(row["cpu"], float) and isinstance(row["gpu"], float)
            else None
        )
        row["speedup"] = speedup if speedup is not None else "-"
        rows.append(row)
        shown = {k: (f"{v:.3f}s" if isinstance(v, float) else v) for k, v in row.items()}
        print(f"  {n} qubits: GPU {shown['gpu']}, CPU {shown['cpu']}, speed-up {shown['speedup']}")
    path = write("aer_devices", {"params": vars(args), "device": gpu.describe(), "rows": rows})
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
