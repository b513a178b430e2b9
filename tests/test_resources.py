"""Experiment.resources: sizes and their one-line errors, which value wins, the defaults;
and the local runtime, which enforces no bound and says so rather than claim one.

What the docker runtime enforces is tested against the engine in
tests/runtimes/docker/test_bounds.py.
"""

from __future__ import annotations

import pytest

import omnilab
from omnilab import Experiment, Redis, Resources, UsageError
from omnilab.progress import Reporter
from omnilab.resources import Bounds, check, format_size, parse_size

GIB = 1 << 30
MIB = 1 << 20


def test_sizes_read_as_docker_writes_them_and_bad_values_are_one_line() -> None:
    for text, expected in [
        ("512m", 512 * MIB),
        ("2g", 2 * GIB),
        ("1.5GiB", 3 * GIB // 2),
        ("4 GB", 4 * GIB),
        (1234, 1234),
        ("unlimited", "unlimited"),
    ]:
        assert parse_size(text, "disk") == expected
    for number in (2 * GIB, 1536 * MIB, 1234):
        assert parse_size(format_size(number), "disk") == number  # recorded, read back
    assert Resources(memory="2g", cpus="1.5", pids="64").memory == 2 * GIB
    for kwargs, message in [
        ({"memory": "2x"}, "memory='2x' is not a size"),
        ({"disk": -1}, "disk=-1 must be positive"),
        ({"disk": True}, "disk=True is not a size"),
        ({"memory": "1m"}, "memory='1m' is below 8 MiB"),
        ({"cpus": "many"}, "cpus='many' is not a number of CPUs"),
        ({"cpus": 0}, "cpus=0 must be at least 0.01"),
        ({"pids": 0}, "pids=0 must be a positive number"),
        ({"per_service": {"redis": {"memroy": "1g"}}}, "has no field 'memroy'"),
        ({"per_service": {"redis": Resources(per_service={"x": Resources()})}}, "its own"),
    ]:
        with pytest.raises(UsageError, match=message) as caught:
            Resources(**kwargs)
        assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="per_service names 'postgres'"):
        check(Resources(per_service={"postgres": {}}), ["redis"], "Mine")
    with pytest.raises(UsageError, match="must be Resources"):
        check("2g", ["redis"], "Mine")


def test_per_service_then_the_experiment_then_the_service_then_the_defaults() -> None:
    declared = check(
        {"memory": "1g", "per_service": {"postgres": {"disk": "8g", "cpus": 2}}},
        ["redis", "postgres"],
        "Mine",
    )
    host = 64 * GIB
    assert declared.bounds_for("postgres", None, host) == Bounds(
        memory=GIB, cpus=2.0, pids=1024, disk=8 * GIB
    )
    assert declared.bounds_for("redis", None, host) == Bounds(memory=GIB, pids=1024, disk=GIB)
    # A service's own default (Ollama holds a model in memory) yields to what is declared.
    ollama = omnilab.Ollama.default_resources
    assert Resources().bounds_for("ollama", ollama, host).memory == 8 * GIB
    assert declared.bounds_for("ollama", ollama, host).memory == GIB
    # Defaults shrink to a quarter of a small host's memory; what is declared does not.
    assert Resources().bounds_for("redis", None, 4 * GIB) == Bounds(memory=GIB, pids=1024, disk=GIB)
    assert Resources(memory="3g").bounds_for("redis", None, 4 * GIB).memory == 3 * GIB
    assert Resources(memory="unlimited").bounds_for("redis", None, host).memory is None


class Lines(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


class LocallyBounded(Experiment):
    services = [Redis()]
    gpu = False
    resources = Resources(memory="1g")

    def run(self, ctx):  # type: ignore[no-untyped-def]
        return {"pong": ctx.redis.ping()}


def test_the_local_runtime_claims_no_bound() -> None:
    lines = Lines()
    run = omnilab.run(LocallyBounded, runtime="local", reporter=lines)
    assert run.ok, run.error
    assert any(
        line.startswith("resources: not enforced: the local runtime enforces no resource bound")
        for line in lines.lines
    )
    assert run.record.stack["bounds"]["enforced"] is False
    assert "bounds" not in run.record.stack["services"]["redis"]
