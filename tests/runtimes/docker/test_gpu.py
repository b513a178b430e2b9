"""GPU passthrough decisions: which engines can pass GPUs, and the device requests made.

No GPU exists where these tests run; the refusal and the CPU fallback are tested against
the real engine in test_bad_input.py, beside this file. Here: the pure decisions, for every kind of
engine, including the ones this machine does not have.
"""

from __future__ import annotations

from pathlib import Path

from omnilab.gpu import Gpu
from omnilab.runtimes.docker.engine import GpuSupport, device_requests, gpu_support

GPUS = [Gpu(0, "A100", "GPU-aaaa"), Gpu(1, "A100", "GPU-bbbb")]
NVIDIA = GpuSupport("nvidia", "NVIDIA container runtime")
CDI = GpuSupport("cdi", "CDI (nvidia.com/gpu)")


def test_all_gpus_are_requested_like_docker_run_gpus_all() -> None:
    (request,) = device_requests(NVIDIA, GPUS, None)
    assert request == {
        "Driver": "",
        "Count": -1,
        "DeviceIDs": [],
        "Capabilities": [["gpu"]],
        "Options": {},
    }


def test_cuda_visible_devices_names_the_gpus_by_uuid() -> None:
    (request,) = device_requests(NVIDIA, GPUS[1:], "1")
    assert request["DeviceIDs"] == ["GPU-bbbb"]
    assert request["Count"] == 0
    assert request["Capabilities"] == [["gpu"]]


def test_cdi_engines_get_cdi_device_names() -> None:
    (everything,) = device_requests(CDI, GPUS, None)
    assert everything["Driver"] == "cdi"
    assert everything["DeviceIDs"] == ["nvidia.com/gpu=all"]
    (chosen,) = device_requests(CDI, GPUS[:1], "0")
    assert chosen["DeviceIDs"] == ["nvidia.com/gpu=GPU-aaaa"]


def test_nothing_is_requested_without_gpus_or_without_support() -> None:
    assert device_requests(NVIDIA, [], None) == []
    assert device_requests(GpuSupport(None, "no"), GPUS, None) == []


def test_engine_support_is_read_from_docker_info(tmp_path: Path) -> None:
    assert gpu_support({"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia"}}}).kind == "nvidia"
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    info = {"Runtimes": {"runc": {}}, "CDISpecDirs": [str(spec_dir)]}
    none = gpu_support(info)
    assert none.kind is None and "no CDI spec for nvidia.com/gpu" in none.detail
    (spec_dir / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    assert gpu_support(info).kind == "cdi"
    assert gpu_support({}).kind is None
