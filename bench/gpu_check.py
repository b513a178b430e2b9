"""omnilab's GPU paths, checked in one run on a machine with an NVIDIA GPU.

    python bench/gpu_check.py --out DIR [--cpu-only] [--qubits 20 22 ... 30]
                              [--cpu-max-qubits 26] [--budget 420] [--parts ...]

CI has no GPU, so every GPU path of omnilab (``nvidia-smi`` parsing, Aer on the GPU, the
memory guard against GPU memory, a worker's GPU slots) is exercised here, once, when a
GPU machine is at hand; ``bench/gpu_check.sh`` installs what it needs first. Parts, in
order (``--parts`` picks some):

- ``detect``: what ``nvidia-smi`` says and what ``omnilab.gpu.host_gpus()`` makes of it;
- ``aer_info``: ``omnilab aer info --json``, as auto and as ``--gpu``;
- ``timings``: statevector GHZ and quantum-volume circuits at each ``--qubits`` size, on
  the GPU and on the CPU (up to ``--cpu-max-qubits``), single and double precision,
  each through omnilab's ``Aer`` and through ``AerSimulator`` directly (transpiled the
  same way): omnilab's overhead and the GPU's speed-up per size. Sizes whose predicted
  time would overrun ``--budget`` are skipped, and the summary says so;
- ``guard``: a circuit one size past what the device's free memory holds is refused
  by omnilab's memory check before anything is sent to the device (and GPU memory in
  use is unchanged);
- ``slots``: a worker with one GPU and two slots runs two GPU runs queued together:
  both get that GPU, one after the other, never at once (a real worker, with Redis and
  PostgreSQL started as local processes by omnilab's local runtime).

``--cpu-only`` runs every part that needs no GPU (on the CPU, at the sizes given) and
marks the rest skipped: that is what CI runs, so the script is known to work before GPU
time is spent. Writes ``DIR/gpu_check.json`` and ``DIR/summary.txt``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARTS = ("detect", "aer_info", "timings", "guard", "slots")
SHOTS = 100
QV_DEPTH = 10


# -- circuits ----------------------------------------------------------------------------


def ghz(n: int) -> Any:
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(n, name=f"ghz{n}")
    circuit.h(0)
    for i in range(n - 1):
        circuit.cx(i, i + 1)
    circuit.measure_all()
    return circuit


def quantum_volume(n: int) -> Any:
    """Random SU(4) layers on random pairs (qiskit's quantum volume), depth QV_DEPTH."""
    from qiskit.circuit import library

    if hasattr(library, "quantum_volume"):  # qiskit >= 2.2; the class is deprecated there
        circuit = library.quantum_volume(n, depth=QV_DEPTH, seed=7).decompose()
    else:
        circuit = library.QuantumVolume(n, depth=QV_DEPTH, seed=7).decompose()
    circuit.name = f"qv{n}"
    circuit.measure_all()
    return circuit


CIRCUITS: dict[str, Callable[[int], Any]] = {"ghz": ghz, "qv": quantum_volume}


# -- parts -------------------------------------------------------------------------------


def part_detect(args: argparse.Namespace) -> dict[str, Any]:
    from omnilab.gpu import host_gpus, smi_rows

    raw = smi_rows("index,name,uuid,memory.total,driver_version")
    gpus = [g.to_dict() for g in host_gpus()]
    result = {"nvidia_smi": raw, "host_gpus": gpus}
    if not args.cpu_only and not gpus:
        result["problem"] = "no GPU detected: nvidia-smi missing or silent"
    return result


def _omnilab(*argv: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from omnilab.cli.main import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )


def part_aer_info(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for label, extra in (("auto", ()), ("gpu", ("--gpu",))):
        if label == "gpu" and args.cpu_only:
            continue
        done = _omnilab("aer", "info", "--json", *extra)
        entry: dict[str, Any] = {"exit": done.returncode}
        try:
            entry["info"] = json.loads(done.stdout)
        except json.JSONDecodeError:
            entry["stderr"] = done.stderr.strip()[-500:]
        result[label] = entry
    auto = result["auto"].get("info", {})
    result["device"] = auto.get("device")
    if not args.cpu_only and result["device"] != "GPU":
        result["problem"] = f"omnilab's Aer would not use the GPU: {auto.get('reason')}"
    return result


def _time_direct(circuit: Any, device: str, precision: str) -> float:
    """The plain route: AerSimulator on the same device, transpiled the same way."""
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    began = time.perf_counter()
    simulator = AerSimulator(method="statevector", device=device, precision=precision)
    compiled = transpile(circuit, simulator, optimization_level=1, seed_transpiler=5)
    result = simulator.run(compiled, shots=SHOTS, seed_simulator=5).result()
    if not result.success:
        raise RuntimeError(f"AerSimulator failed: {result.status}")
    return time.perf_counter() - began


def _time_omnilab(circuit: Any, gpu: bool, precision: str) -> float:
    from omnilab.workloads.aer import Aer

    began = time.perf_counter()
    aer = Aer(
        gpu=gpu,
        method="statevector",
        precision=precision,
        seed=5,
        shots=SHOTS,
        progress=io.StringIO(),
    )
    aer.run(circuit)
    return time.perf_counter() - began


def part_timings(args: argparse.Namespace) -> dict[str, Any]:
    from omnilab.workloads.aer_resources import aer_devices

    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    problem = None
    devices = [("CPU", False)]
    if not args.cpu_only and "GPU" in aer_devices():
        devices.insert(0, ("GPU", True))
    elif not args.cpu_only:
        # The rest still tells something: the CPU figures and omnilab's overhead.
        problem = "Aer has no GPU device here (see aer_info): timed on the CPU only"
    deadline = time.monotonic() + args.budget
    warm = ghz(min(args.qubits))
    for name, _ in devices:  # first use of each device (CUDA context, thread pools)
        _time_direct(warm, name, "double")
    for circuit_name, make in CIRCUITS.items():
        for device, gpu in devices:
            last: float | None = None
            for n in sorted(args.qubits):
                if device == "CPU" and n > args.cpu_max_qubits:
                    skipped.append(f"{circuit_name} {n} qubits on CPU: above --cpu-max-qubits")
                    continue
                # Each 2 more qubits quadruple a statevector's work: skip what would
                # not finish before the deadline, with room for the other arms.
                predicted = (last or 0.0) * 4 * 4  # 2 precisions x 2 routes, x4 per step
                if time.monotonic() + predicted > deadline:
                    skipped.append(f"{circuit_name} {n} qubits on {device}: over the budget")
                    continue
                circuit = make(n)
                for precision in ("single", "double"):
                    # Short jobs are noise: alternate the two routes and keep each
                    # one's best of three; long ones run once each.
                    reps = 3 if last is None or last < 1.0 else 1
                    directs, ours_all = [], []
                    for _ in range(reps):
                        directs.append(_time_direct(circuit, device, precision))
                        ours_all.append(_time_omnilab(circuit, gpu, precision))
                    direct, ours = min(directs), min(ours_all)
                    rows.append(
                        {
                            "circuit": circuit_name,
                            "qubits": n,
                            "device": device,
                            "precision": precision,
                            "aer_s": direct,
                            "omnilab_s": ours,
                            "overhead": ours / direct,
                        }
                    )
                    last = max(direct, ours)
    speedups = []
    for row in rows:
        if row["device"] != "GPU":
            continue
        cpu = next(
            (
                r
                for r in rows
                if r["device"] == "CPU"
                and (r["circuit"], r["qubits"], r["precision"])
                == (row["circuit"], row["qubits"], row["precision"])
            ),
            None,
        )
        if cpu is not None:
            speedups.append(
                {
                    "circuit": row["circuit"],
                    "qubits": row["qubits"],
                    "precision": row["precision"],
                    "gpu_vs_cpu": cpu["aer_s"] / row["aer_s"],
                }
            )
    result = {
        "shots": SHOTS,
        "qv_depth": QV_DEPTH,
        "rows": rows,
        "speedups": speedups,
        "skipped": skipped,
    }
    if problem:
        result["problem"] = problem
    return result


def part_guard(args: argparse.Namespace) -> dict[str, Any]:
    from omnilab.gpu import smi_rows
    from omnilab.workloads.aer import Aer
    from omnilab.workloads.aer_resources import (
        AerMemoryError,
        free_gpu_memory,
        free_memory,
        max_qubits,
    )

    gpu = not args.cpu_only
    free = free_gpu_memory() if gpu else free_memory()
    if free is None:
        return {"problem": "free GPU memory unknown: nvidia-smi did not answer"}
    n = max_qubits(int(free * 0.9), "statevector", "double") + 2
    used_before = smi_rows("memory.used") if gpu else None
    aer = Aer(gpu=gpu, method="statevector", precision="double", progress=io.StringIO())
    began = time.perf_counter()
    try:
        aer.run(ghz(n))
    except AerMemoryError as exc:
        refused, message = True, str(exc)
    else:
        refused, message = False, "ran: the memory check did not refuse it"
    seconds = time.perf_counter() - began
    used_after = smi_rows("memory.used") if gpu else None
    result: dict[str, Any] = {
        "device": "GPU" if gpu else "CPU",
        "free_bytes": free,
        "qubits": n,
        "refused": refused,
        "seconds": seconds,
        "message": message,
        "memory_used_mib": {"before": used_before, "after": used_after},
    }
    if not refused:
        result["problem"] = "the memory guard let a circuit through that does not fit"
    elif seconds > 5:
        result["problem"] = f"the refusal took {seconds:.1f} s: it should come before launch"
    return result


SLOT_EXPERIMENT = '''
import os
import time

from omnilab import Experiment


class GpuHold(Experiment):
    """Holds its GPU for a few seconds and says which one and when."""

    gpu = {gpu!r}

    def run(self, ctx):
        began = time.time()
        time.sleep(3)
        return {{
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "began": began,
            "ended": time.time(),
        }}
'''


def part_slots(args: argparse.Namespace) -> dict[str, Any]:
    """Two GPU runs queued at once to a worker with one GPU and two slots."""
    import omnilab
    from omnilab.catalog import Catalog
    from omnilab.gpu import host_gpus
    from omnilab.queue.broker import Broker
    from omnilab.queue.submit import queue_run
    from omnilab.services.postgres import Postgres
    from omnilab.services.redis import Redis
    from omnilab.tracking.store import TrackingStore

    gpus = host_gpus()
    if not gpus:
        return {"skipped": "no GPU: a worker's GPU slots need one"}
    gpu = str(gpus[0].index)
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    (folder / "gpu_hold.py").write_text(SLOT_EXPERIMENT.format(gpu=True))
    with omnilab.stack(Redis(), Postgres(), runtime="local") as stack:
        env = {
            **os.environ,
            "OMNILAB_TRACKING_URL": stack.env["POSTGRES_URL"],
            "REDIS_URL": stack.env["REDIS_URL"],
            "OMNILAB_EXPERIMENTS_DIR": str(folder),
            "OMNILAB_RUNTIME": "local",
            "OMNILAB_STATE_DIR": str(folder / "state"),
        }
        code = "import sys; from omnilab.cli.main import main; main(sys.argv[1:])"
        worker = subprocess.Popen(
            [sys.executable, "-c", code, "worker", "-c", "2", "--gpus", gpu],
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            store = TrackingStore(env["OMNILAB_TRACKING_URL"])
            broker = Broker(env["REDIS_URL"], "omnilab")
            entry = Catalog(folder).get("GpuHold")
            ids = [queue_run(store, broker, entry, {}, retries=0)[0].id for _ in range(2)]
            deadline = time.monotonic() + 120
            runs: list[Any] = []
            while time.monotonic() < deadline:
                runs = [store.get_run(run_id) for run_id in ids]
                if all(r.status in ("succeeded", "failed", "cancelled") for r in runs):
                    break
                time.sleep(0.5)
            store.close()
        finally:
            worker.terminate()
            try:
                output, _ = worker.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                output, _ = worker.communicate()
    summaries = [r.summary or {} for r in runs]
    result: dict[str, Any] = {
        "gpu": gpu,
        "statuses": [r.status for r in runs],
        "seen": [s.get("cuda_visible_devices") for s in summaries],
        "worker_output": output[-2000:],
    }
    problems = []
    if any(r.status != "succeeded" for r in runs):
        problems.append(f"runs ended {result['statuses']}")
    elif any(seen != gpu for seen in result["seen"]):
        problems.append(f"runs saw CUDA_VISIBLE_DEVICES={result['seen']}, not {gpu}")
    else:
        first, second = sorted(summaries, key=lambda s: s["began"])
        result["gap_s"] = second["began"] - first["ended"]
        if second["began"] < first["ended"]:
            problems.append("the two runs held the GPU at the same time")
    if problems:
        result["problem"] = "; ".join(problems)
    return result


RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "detect": part_detect,
    "aer_info": part_aer_info,
    "timings": part_timings,
    "guard": part_guard,
    "slots": part_slots,
}


# -- summary -----------------------------------------------------------------------------


def summarize(report: dict[str, Any]) -> str:
    lines = [f"omnilab GPU check ({'CPU only' if report['cpu_only'] else 'GPU'})"]
    detect = report["parts"].get("detect", {})
    if detect:
        found = (
            ", ".join(
                f"{g['index']}:{g['name']} ({g['memory_mib']} MiB)"
                for g in detect.get("host_gpus", [])
            )
            or "none"
        )
        lines.append(f"GPUs detected by omnilab: {found}")
    for name, part in report["parts"].items():
        if "problem" in part:
            lines.append(f"PROBLEM {name}: {part['problem']}")
        elif "skipped" in part and isinstance(part["skipped"], str):
            lines.append(f"skipped {name}: {part['skipped']}")
        elif "error" in part:
            lines.append(f"ERROR {name}: {part['error']}")
    timings = report["parts"].get("timings", {})
    if timings.get("rows"):
        lines.append("statevector timings (seconds; omnilab / AerSimulator = overhead):")
        for row in timings["rows"]:
            lines.append(
                f"  {row['circuit']:3s} {row['qubits']:2d}q {row['device']} {row['precision']:6s} "
                f"aer {row['aer_s']:8.3f}  omnilab {row['omnilab_s']:8.3f}  "
                f"x{row['overhead']:.2f}"
            )
        for speedup in timings.get("speedups", []):
            lines.append(
                f"  GPU vs CPU {speedup['circuit']} {speedup['qubits']}q "
                f"{speedup['precision']}: {speedup['gpu_vs_cpu']:.1f}x"
            )
        for skipped in timings.get("skipped", []):
            lines.append(f"  skipped: {skipped}")
    guard = report["parts"].get("guard", {})
    if "refused" in guard:
        lines.append(
            f"memory guard: {guard['qubits']} qubits on {guard['device']} "
            f"{'refused' if guard['refused'] else 'NOT refused'} in {guard['seconds']:.2f} s"
        )
    slots = report["parts"].get("slots", {})
    if "gap_s" in slots:
        lines.append(
            f"worker GPU slots: both runs on GPU {slots['gpu']}, one after the other "
            f"({slots['gap_s']:.2f} s between them)"
        )
    lines.append(
        "not checked: the docker runtime's GPU paths (device requests, the experiments "
        "container's GPUs) need a Docker engine with the NVIDIA toolkit: "
        + (
            "an engine answers here, but they are left to the docker tests."
            if report.get("docker_engine")
            else "no Docker engine here; the engine-side refusal tests cover them in CI."
        )
    )
    lines.append(f"total {report['seconds']:.0f} s; problems: {report['problems']}")
    return "\n".join(lines) + "\n"


def _docker_engine() -> bool:
    from omnilab.errors import OmnilabError

    try:
        from omnilab.runtimes.docker.engine import connect

        connect().ping()
    except (OmnilabError, ImportError, OSError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for the results.")
    parser.add_argument("--cpu-only", action="store_true", help="Skip what needs a GPU.")
    parser.add_argument("--qubits", type=int, nargs="+", default=[20, 22, 24, 26, 28, 30])
    parser.add_argument("--cpu-max-qubits", type=int, default=26)
    parser.add_argument("--budget", type=float, default=300.0, help="Seconds for timings.")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args(argv)
    if min(args.qubits) < 2:
        parser.error("--qubits: at least 2")
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    report: dict[str, Any] = {"cpu_only": args.cpu_only, "parts": {}}
    for name in args.parts:
        if args.cpu_only and name == "slots":
            report["parts"][name] = {"skipped": "--cpu-only: a worker's GPU slots need a GPU"}
            continue
        print(f"gpu_check: {name}...", file=sys.stderr, flush=True)
        part_began = time.monotonic()
        try:
            report["parts"][name] = RUNNERS[name](args)
        except Exception as exc:  # one part's failure must not hide the others' results
            report["parts"][name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        report["parts"][name]["seconds"] = time.monotonic() - part_began
    report["docker_engine"] = _docker_engine()
    report["seconds"] = time.monotonic() - began
    report["problems"] = sum(1 for p in report["parts"].values() if "problem" in p or "error" in p)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    text = summarize(report)
    (args.out / "summary.txt").write_text(text)
    print(text, end="")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
