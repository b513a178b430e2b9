"""GPUs on this host, as ``nvidia-smi`` reports them, filtered by CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Literal

from omnilab.errors import UsageError

#: What an experiment or a stack asks for: "auto" uses GPUs when the runtime can give them,
#: True requires them, False never. Here rather than in experiment.py because runtimes and
#: stacks decide on it, below the experiment classes.
GpuPolicy = bool | Literal["auto"]


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str
    memory_mib: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _visible(gpus: list[Gpu], visible: str | None) -> list[Gpu]:
    """Apply CUDA_VISIBLE_DEVICES: indexes or UUIDs, comma-separated; empty means none."""
    if visible is None:
        return gpus
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    chosen = []
    for token in wanted:
        for gpu in gpus:
            if token == str(gpu.index) or gpu.uuid.startswith(token):
                chosen.append(gpu)
    return chosen


def smi_rows(fields: str) -> list[list[str]] | None:
    """``nvidia-smi --query-gpu=FIELDS`` as rows of stripped values; None without it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [[p.strip() for p in line.split(",")] for line in out.strip().splitlines()]


def host_gpus() -> list[Gpu]:
    """NVIDIA GPUs this process may use; empty without a driver or ``nvidia-smi``."""
    rows = smi_rows("index,name,uuid,memory.total")
    if rows is None:
        return []
    gpus = []
    for parts in rows:
        if len(parts) >= 3 and parts[0].isdigit():
            memory = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None
            gpus.append(Gpu(int(parts[0]), parts[1], parts[2], memory))
    return _visible(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))


def decide(policy: bool | str, available: list[Gpu], where: str) -> list[Gpu]:
    """Apply an experiment's ``gpu`` policy to the GPUs ``where`` can give."""
    if policy is False:
        return []
    if policy is True and not available:
        raise UsageError(f"gpu=True, but {where} has no usable GPU (use gpu='auto' to fall back)")
    if policy not in (True, "auto"):
        raise UsageError(f"gpu must be True, False or 'auto', not {policy!r}")
    return available
