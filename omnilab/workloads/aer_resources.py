"""Where an Aer simulation may run (GPU or CPU) and whether it fits in memory.

Both are decided before any circuit runs, with a one-line reason, so that a request for
the GPU never silently becomes a CPU run and a statevector too large for the machine is
refused with what would fit, instead of Aer failing (or the machine swapping) mid-run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from omnilab.errors import UsageError
from omnilab.gpu import Gpu, host_gpus, smi_rows

GpuRequest = bool | Literal["auto"]
Precision = Literal["double", "single"]

#: Distributions that provide the ``qiskit_aer`` package, GPU builds first.
_AER_DISTS = ("qiskit-aer-gpu", "qiskit-aer-gpu-cu11", "qiskit-aer")
#: Methods whose memory grows as a power of two of the qubit count: bytes per amplitude
#: times amplitudes (2^n for a state, 4^n for a density matrix or a unitary).
_DENSE_METHODS = {"statevector": 1, "density_matrix": 2, "unitary": 2, "superop": 4}
#: Gates the stabilizer method simulates: a circuit of only these is Clifford, and Aer's
#: automatic method runs it without a dense state.
_CLIFFORD = frozenset(
    {
        *("id", "x", "y", "z", "h", "s", "sdg", "sx", "sxdg"),
        *("cx", "cy", "cz", "swap", "iswap", "ecr", "dcx"),
        *("measure", "reset", "barrier", "delay"),
    }
)
GIB = 1024**3


class AerUnavailable(UsageError):
    """Qiskit Aer is not installed, or cannot give the device asked for."""


class AerMemoryError(UsageError):
    """A dense simulation (statevector...) that would not fit in free memory."""


@dataclass(frozen=True)
class AerDevice:
    """The device a simulation runs on, and why this one."""

    name: Literal["GPU", "CPU"]
    reason: str
    package: str
    version: str
    gpus: tuple[Gpu, ...] = ()

    def describe(self) -> str:
        gpus = ", ".join(g.name for g in self.gpus)
        where = f"GPU ({gpus})" if self.name == "GPU" and gpus else self.name
        return f"{where} with {self.package} {self.version}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.name,
            "reason": self.reason,
            "package": self.package,
            "version": self.version,
            "gpus": [g.to_dict() for g in self.gpus],
        }


def aer_package() -> tuple[str, str]:
    """(distribution, version) that provides ``qiskit_aer`` here."""
    for dist in _AER_DISTS:
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    raise AerUnavailable(
        "Qiskit Aer is not installed: pip install 'omnilab[aer]' (CPU) or 'omnilab[gpu]'"
    )


@cache
def aer_devices() -> tuple[str, ...]:
    """Devices this Aer build can use (``('CPU', 'GPU')`` with a GPU build and a GPU)."""
    from qiskit_aer import AerSimulator

    return tuple(AerSimulator().available_devices())


def parse_use_gpu(value: str | None) -> bool | None:
    """``QISKIT_AER_USE_GPU`` (the production team's variable): 1 requires, 0 forbids."""
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"QISKIT_AER_USE_GPU={value!r}: use 1 (GPU required) or 0 (CPU)")


def _no_gpu_reason(package: str) -> str:
    if not package.startswith("qiskit-aer-gpu"):
        return (
            "qiskit-aer is the CPU build (pip install 'omnilab[gpu]' replaces it with "
            "qiskit-aer-gpu)"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    if not host_gpus():
        return f"{package} is installed but nvidia-smi shows no usable GPU{where}"
    return f"{package} is installed but finds no CUDA device it can use{where}"


def choose_device(gpu: GpuRequest, use_gpu_env: str | None = None) -> AerDevice:
    """Apply a GPU request: ``True`` needs a GPU, ``False`` never, ``"auto"`` when one works.

    ``QISKIT_AER_USE_GPU`` turns ``"auto"`` into a requirement (1) or a refusal (0); an
    explicit ``True``/``False`` wins over it.
    """
    if gpu not in (True, False, "auto"):
        raise UsageError(f"gpu must be True, False or 'auto', not {gpu!r}")
    package, version = aer_package()
    env = parse_use_gpu(use_gpu_env)
    wanted: GpuRequest = gpu
    why_wanted = "gpu=True"
    if gpu == "auto" and env is not None:
        wanted, why_wanted = env, f"QISKIT_AER_USE_GPU={use_gpu_env}"
    if wanted is False:
        reason = "GPU not wanted (" + ("gpu=False" if gpu is False else why_wanted) + ")"
        return AerDevice("CPU", reason, package, version)
    if "GPU" in aer_devices():
        return AerDevice("GPU", "a CUDA GPU is available", package, version, tuple(host_gpus()))
    why_not = _no_gpu_reason(package)
    if wanted is True:
        raise AerUnavailable(f"{why_wanted}, but no GPU can be used: {why_not}")
    return AerDevice("CPU", f"no GPU: {why_not}", package, version)


# -- memory -----------------------------------------------------------------------------


def _cgroup_free() -> int | None:
    """Memory left under this process's cgroup limit (a container's), if it has one."""
    candidates = [
        (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
        (
            Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            Path("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        ),
    ]
    for limit_path, usage_path in candidates:
        try:
            limit_text = limit_path.read_text().strip()
            usage = int(usage_path.read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or int(limit_text) >= 1 << 60:  # no limit set
            return None
        return max(int(limit_text) - usage, 0)
    return None


def free_memory() -> int:
    """Bytes that can be allocated now: MemAvailable, or the cgroup's room if smaller."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    room = _cgroup_free()
    return min(available, room) if room is not None else available


def free_gpu_memory() -> int | None:
    """Free bytes on the emptiest visible GPU, from nvidia-smi; None when unknown."""
    rows = smi_rows("index,memory.free")
    if rows is None:
        return None
    visible = {g.index for g in host_gpus()}
    free = [
        int(parts[1]) * 1024 * 1024
        for parts in rows
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit()
        if int(parts[0]) in visible
    ]
    return max(free) if free else None


def active_qubits(circuit: Any) -> int:
    """Qubits the circuit's operations touch (Aer leaves idle ones out of the state)."""
    used = set()
    for instruction in circuit.data:
        if instruction.operation.name != "barrier":
            used.update(instruction.qubits)
    return len(used)


def dense_method(circuit: Any, method: str) -> str | None:
    """The dense method a circuit will run with, or None for a method without a dense
    state. ``automatic`` is taken as Aer takes it without noise: stabilizer for a
    Clifford circuit, else statevector."""
    if method == "automatic":
        if set(circuit.count_ops()) <= _CLIFFORD:
            return None
        return "statevector"
    return method if method in _DENSE_METHODS else None


def dense_bytes(n_qubits: int, method: str, precision: Precision) -> int:
    per_amplitude = 16 if precision == "double" else 8
    return (1 << (n_qubits * _DENSE_METHODS[method])) * per_amplitude  # 2**n, as an int


def max_qubits(budget: int, method: str, precision: Precision) -> int:
    """The most qubits whose dense state (``method``) fits in ``budget`` bytes."""
    per = 16 if precision == "double" else 8
    if budget < per:
        return 0
    return int(math.log2(budget / per)) // _DENSE_METHODS[method]


def size_text(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


@dataclass
class MemoryPlan:
    """What the largest dense circuit of a job needs, against what is free."""

    method: str | None
    qubits: int
    needed: int
    free: int
    budget: int
    where: str
    checked: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "qubits": self.qubits,
            "needed_bytes": self.needed,
            "free_bytes": self.free,
            "budget_bytes": self.budget,
            "where": self.where,
        }


def check_memory(
    circuits: list[Any],
    method: str,
    precision: Precision,
    device: AerDevice,
    fraction: float = 0.9,
) -> MemoryPlan:
    """Refuse a dense simulation that would not fit in ``fraction`` of free memory."""
    largest: tuple[int, str] | None = None
    for circuit in circuits:
        dense = dense_method(circuit, method)
        if dense is not None:
            n = active_qubits(circuit)
            if largest is None or dense_bytes(n, dense, precision) > dense_bytes(
                *largest, precision
            ):
                largest = (n, dense)
    if device.name == "GPU":
        free, where = free_gpu_memory(), "GPU memory"
        if free is None:
            return MemoryPlan(None, 0, 0, 0, 0, where, checked=False)
    else:
        free, where = free_memory(), "memory"
    budget = int(free * fraction)
    if largest is None:
        return MemoryPlan(None, 0, 0, free, budget, where)
    n, dense = largest
    needed = dense_bytes(n, dense, precision)
    if needed <= budget:
        return MemoryPlan(dense, n, needed, free, budget, where)
    raise AerMemoryError(_refusal(n, dense, precision, needed, free, budget, where, fraction))


def _refusal(
    n: int,
    method: str,
    precision: Precision,
    needed: int,
    free: int,
    budget: int,
    where: str,
    fraction: float,
) -> str:
    power = _DENSE_METHODS[method]
    per = 16 if precision == "double" else 8
    formula = f"2^{n * power} x {per} bytes" if power > 1 else f"2^{n} x {per} bytes"
    fit_double = max_qubits(budget, method, "double")
    fit_single = max_qubits(budget, method, "single")
    options = [f"at most {fit_double} qubits in double precision, {fit_single} in single"]
    if precision == "double":
        single = dense_bytes(n, method, "single")
        if single <= budget:
            options.append(f"precision='single' ({size_text(single)}) fits")
        else:
            options.append(f"precision='single' would still need {size_text(single)}")
    options.append(
        "method='matrix_product_state' (memory grows with entanglement, not qubit count)"
    )
    return (
        f"{method} simulation of {n} qubits needs {size_text(needed)} ({formula}, {precision} "
        f"precision) but {size_text(free)} of {where} is free ({fraction:.0%} usable, "
        f"{size_text(budget)}); what fits: " + "; ".join(options)
    )
