"""Experiment.requires: checked where it is written, combined with gpu and isolation,
matched against what a worker offers; worker labels as a command line gives them."""

from __future__ import annotations

import pytest

from omnilab import Experiment, Requirements
from omnilab.errors import UsageError
from omnilab.requirements import GpuOffer, Offer, needs, parse_labels, unmet

H100 = GpuOffer(id="0", model="NVIDIA H100 80GB HBM3", memory_mib=81559)
A100_40 = GpuOffer(id="1", model="NVIDIA A100-SXM4-40GB", memory_mib=40960)


def _define(requires: object, **attributes: object) -> type[Experiment]:
    return type("Probe", (Experiment,), {"requires": requires, **attributes})


def test_requires_is_checked_when_the_class_is_defined() -> None:
    cases = {
        "unknown key 'gpus' (known: gpu, gpu_memory_gb, gpu_model, runtime, labels, host)": {
            "gpus": 1
        },
        "gpu: 2 GPUs: a run gets one GPU (each worker slot hands out one)": {"gpu": 2},
        "runtime: unknown runtime 'podman': choose one of local, docker": {"runtime": "podman"},
        "labels: label zone=a b: write key=value": {"labels": {"zone": "a b"}},
        "gpu_memory_gb: Input should be greater than 0": {"gpu_memory_gb": 0},
        "gpu: 0, but a GPU model or memory is asked for": {"gpu": 0, "gpu_model": "H100"},
    }
    for expected, requires in cases.items():
        with pytest.raises(UsageError) as caught:
            _define(requires)
        message = str(caught.value)
        assert message.startswith("Probe.requires: ") and expected in message, message
        assert "\n" not in message
    with pytest.raises(UsageError, match=r"requires must be a dict such as"):
        _define(["gpu"])


def test_gpu_and_isolation_imply_requirements_and_may_not_contradict_them() -> None:
    assert _define(None).requirements() is None  # the shared queue, as before
    assert _define({}, gpu="auto").requirements() is None
    gpu = _define(None, gpu=True).requirements()
    assert gpu is not None and gpu.gpus == 1 and gpu.as_json() == {"gpu": 1}
    boxed = _define({"labels": {"zone": "a"}}, isolation="container").requirements()
    assert boxed is not None
    assert boxed.as_json() == {"runtime": "docker", "labels": {"zone": "a"}}
    named = _define({"gpu_model": "H100"}).requirements()
    assert named is not None and named.gpus == 1  # a model implies a GPU
    for requires, attributes, expected in (
        ({"gpu": 0}, {"gpu": True}, "gpu = True, but requires says gpu: 0"),
        ({"gpu": 1}, {"gpu": False}, "gpu = False, but requires asks for a GPU"),
        ({"runtime": "local"}, {"isolation": "container"}, "runs in the docker runtime"),
    ):
        with pytest.raises(UsageError, match=expected):
            _define(requires, **attributes)
    # A Requirements object is taken as it is.
    given = Requirements(host="b")
    assert _define(given).requirements() == given


def test_what_a_worker_offers_is_matched_key_by_key() -> None:
    required = Requirements(
        gpu_memory_gb=40, gpu_model="h100", runtime="docker", labels={"zone": "a"}, host="b"
    )
    offer = Offer(host="b", runtimes=["local", "docker"], gpus=[H100], labels={"zone": "a"})
    assert unmet(required, offer) == []
    assert unmet(required, offer.model_copy(update={"host": "c"})) == ["host"]
    assert unmet(required, offer.model_copy(update={"runtimes": ["local"]})) == ["runtime"]
    assert unmet(required, offer.model_copy(update={"labels": {"zone": "b"}})) == ["labels.zone"]
    assert unmet(required, offer.model_copy(update={"gpus": []})) == [
        "gpu",
        "gpu_model",
        "gpu_memory_gb",
    ]
    # Every GPU must do: a worker's GPU runs may land on any of its GPU slots.
    mixed = offer.model_copy(update={"gpus": [H100, A100_40]})
    assert unmet(required, mixed) == ["gpu_model"]
    assert unmet(Requirements(gpu_memory_gb=80), Offer(host="b", gpus=[H100])) == []  # 85.5 GB
    assert unmet(Requirements(gpu_memory_gb=44), Offer(host="b", gpus=[A100_40])) == [
        "gpu_memory_gb"
    ]
    unknown = Offer(host="b", gpus=[GpuOffer(id="0")])  # no driver said what it is
    assert unmet(Requirements(gpu=1), unknown) == []
    assert unmet(Requirements(gpu_model="H100"), unknown) == ["gpu_model"]
    assert list(needs(required).values()) == [
        "host b",
        "the docker runtime",
        "a GPU",
        "a GPU of model h100",
        "a GPU with 40 GB",
        "label zone=a",
    ]


def test_labels_parse_from_flags_and_from_the_setting() -> None:
    assert parse_labels(["zone=a", "disk=ssd", "zone=b"], "--label") == {
        "zone": "b",
        "disk": "ssd",
    }
    assert parse_labels(" zone=a , k8s.io/arch=amd64 ", "label") == {
        "zone": "a",
        "k8s.io/arch": "amd64",
    }
    assert parse_labels("", "label") == {}
    for bad in ("zone", "=a", "zone=", "zo ne=a", "zone=a b", "-x=1"):
        with pytest.raises(UsageError, match=r"^--label .*: write key=value"):
            parse_labels([bad], "--label")
