"""The container sandbox against the real Docker engine.

The sandbox's default image is the codegen image, built here as on an air-gapped host by
`omnilab images build codegen` (Debian packages, wheels made on the host). Like every
docker test, this one fails where no engine answers.
"""

from __future__ import annotations

import io
import socket

import pytest

from omnilab import UsageError
from omnilab.workloads.sandbox import ContainerSandbox, Limits
from tests.support.docker_support import TEST_LABEL, docker_client


@pytest.fixture(scope="session")
def codegen_image(docker_images: list[str]) -> str:
    import sys

    from omnilab.progress import Reporter
    from omnilab.runtimes.docker.images import build

    return build(["codegen"], Reporter(sys.stderr))[-1].spec.tag


@pytest.fixture
def box(docker_scope: str, codegen_image: str) -> ContainerSandbox:
    from omnilab.workloads.settings import get_workload_settings

    assert get_workload_settings().sandbox_image == codegen_image  # the default
    return ContainerSandbox(codegen_image, run_id="container-test")


def test_tests_run_unprivileged_without_network_on_read_only_files(
    box: ContainerSandbox, listener: int, docker_scope: str
) -> None:
    assert box.isolation()["network"] == "none: container with network_mode=none"
    result = box.run_tests(
        {
            "solution.py": "def add(a, b):\n    return a + b\n",
            "test_solution.py": "import os, socket\n"
            "from solution import add\n"
            "def test_ok():\n    assert add(1, 2) == 3\n"
            "def test_wrong():\n    assert add(2, 2) == 5\n"
            "def test_uid():\n    assert os.getuid() == 65534\n"
            "def test_host():\n"
            f"    socket.create_connection(('127.0.0.1', {listener}), timeout=2)\n"
            "def test_interfaces():\n"
            "    assert [n for _, n in socket.if_nameindex()] == ['lo']\n"
            "def test_write():\n    open('solution.py', 'a').write('#')\n"
            "def test_memory():\n    block = bytearray(900 * 1024 * 1024)\n",
        },
        ["test_solution"],
        Limits(memory_mb=256),
    )
    status = {t["name"].split("::")[1]: t.get("error", "passed") for t in result.tests}
    assert status["test_ok"] == "passed" and status["test_uid"] == "passed"
    assert status["test_interfaces"] == "passed"  # no network device but loopback
    assert status["test_wrong"].startswith("AssertionError")
    assert status["test_host"].startswith("ConnectionRefusedError")  # its own loopback
    assert status["test_write"].startswith("PermissionError")
    assert status["test_memory"].startswith("MemoryError")
    # The host side of the same connection works: the cut is the sandbox's.
    socket.create_connection(("127.0.0.1", listener), timeout=2).close()


def test_time_limit_and_container_removed(box: ContainerSandbox, docker_scope: str) -> None:
    result = box.run_tests(
        {"test_spin.py": "def test_spin():\n    while True:\n        pass\n"},
        ["test_spin"],
        Limits(wall_s=1),
    )
    assert result.status == "timeout"
    # docker_scope fails the test if a container with its label is still there.
    left = docker_client().containers.list(
        all=True, filters={"label": f"{TEST_LABEL}={docker_scope}"}
    )
    assert left == []


def test_codegen_scores_in_the_container(box: ContainerSandbox, monkeypatch) -> None:
    from omnilab import CodeGen, CodingTask, Ollama, Redis, Stack
    from omnilab.progress import QuietReporter
    from tests.support import CODEGEN_FIXTURES, STANDIN_BIN

    monkeypatch.setenv("PATH", f"{STANDIN_BIN}:" + __import__("os").environ["PATH"])
    monkeypatch.setenv("OLLAMA_STANDIN_FIXTURES", str(CODEGEN_FIXTURES))
    with Stack(Ollama(), Redis(), runtime="local", reporter=QuietReporter()) as stack:
        gen = CodeGen(stack, model="standin", sandbox=box, progress=io.StringIO())
        report = gen.run(
            [
                CodingTask(
                    name="roman",
                    description="Roman numerals",
                    signature="def to_roman(n: int) -> str",
                    tests="from solution import to_roman\n"
                    "def test_3():\n    assert to_roman(3) == 'III'\n"
                    "def test_4():\n    assert to_roman(4) == 'IV'\n",
                )
            ]
        )
    assert report.summary()["status"] == {"roman": "failed"}  # the stand-in's wrong answer
    assert report.results[0].sandbox.passed == 1
    assert report.summary()["sandbox"]["kind"] == "container"


def test_a_missing_image_is_refused_before_anything_runs(docker_scope: str) -> None:
    with pytest.raises(UsageError, match="image 'omnilab/no-such-image:1' is not on this") as e:
        ContainerSandbox("omnilab/no-such-image:1")
    assert "`omnilab images build codegen`" in str(e.value)


def test_no_engine_is_one_line_naming_where_it_was_looked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sandbox reaches the engine as the docker runtime does (DOCKER_HOST, the same
    one-line reason)."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(UsageError) as refused:
        ContainerSandbox("omnilab/no-such-image:1")
    assert str(refused.value) == (
        "sandbox: no Docker engine answers at unix:///nonexistent/docker.sock (no such socket)"
    )
