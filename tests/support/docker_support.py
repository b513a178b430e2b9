"""Fixtures for the tests that run against the real Docker engine (a plug-in of
tests/conftest.py, so they reach every test).

Those tests are mandatory: where no engine answers they fail (never skip). The images
they use are built once per machine by omnilab itself (`omnilab images build`, cached
by tag), exactly as on an air-gapped host. Each test gets its own label
(``OMNILAB_LABELS``), so it checks and cleans only its own containers, networks and
volumes, and fails if any of them outlives it.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from omnilab.progress import Reporter
from omnilab.runtimes.docker.images import ImageSpec, ImageStatus
from tests.support import STANDIN_DIR

REDIS_IMAGE = "omnilab/redis:7.0-bookworm"
POSTGRES_IMAGE = "omnilab/postgres:15-bookworm"
#: Built from the Qdrant server binary the tests find (`qdrant` on PATH, or
#: OMNILAB_QDRANT_BINARY; CI puts ../shared/bin on PATH).
QDRANT_IMAGE = "omnilab/qdrant:1.19.0-bookworm"
OLLAMA_STANDIN_IMAGE = "omnilab/ollama-standin:0.6.2-bookworm"
TEST_LABEL = "omnilab-test"

#: The tests' Ollama stand-in with the ollama/ollama image's interface (no Ollama image can
#: be had here): built like omnilab's images, but not one of them.
OLLAMA_STANDIN = ImageSpec(
    name="ollama-standin",
    tag=OLLAMA_STANDIN_IMAGE,
    description="tests only: the Ollama-API stand-in, ollama/ollama's interface",
    context=STANDIN_DIR,
    default=False,
)
#: The test images: what `omnilab images build` makes by default (Qdrant's from the
#: binary), plus the Ollama stand-in.
TEST_IMAGES: list[str | ImageSpec] = ["redis", "postgres", "qdrant", OLLAMA_STANDIN]


def docker_client():
    from omnilab.errors import RuntimeUnavailable
    from omnilab.runtimes.docker.engine import connect

    try:
        return connect()
    except RuntimeUnavailable as exc:
        pytest.fail(f"the docker tests need a Docker engine: {exc}", pytrace=False)


def build_test_images(reporter: Reporter) -> list[ImageStatus]:
    """Build (or find current) every image the docker tests use."""
    from omnilab.runtimes.docker.images import build

    return build(TEST_IMAGES, reporter)


@pytest.fixture(scope="session")
def docker_images() -> list[str]:
    docker_client()
    return [r.spec.tag for r in build_test_images(Reporter(sys.stderr))]


def labelled(label: str) -> list[str]:
    """Containers, networks and volumes carrying the test's label (shared volumes are
    exempt: they are a cache that outlives stacks on purpose)."""
    client = docker_client()
    selector = {"label": [f"{TEST_LABEL}={label}"]}
    containers = client.containers.list(all=True, filters=selector, sparse=True)
    found = [f"container {c.attrs['Names'][0]}" for c in containers]
    found += [f"network {n.name}" for n in client.networks.list(filters=selector)]
    found += [
        f"volume {v.name}"
        for v in client.volumes.list(filters=selector)
        if not (v.attrs.get("Labels") or {}).get("io.omnilab.shared")
    ]
    return found


def remove_labelled(label: str) -> None:
    client = docker_client()
    selector = {"label": [f"{TEST_LABEL}={label}"]}
    for c in client.containers.list(all=True, filters=selector, sparse=True):
        c.remove(force=True, v=True)
    for n in client.networks.list(filters=selector):
        n.remove()
    for v in client.volumes.list(filters=selector):
        v.remove(force=True)


@pytest.fixture
def docker_scope(monkeypatch: pytest.MonkeyPatch, docker_images: list[str]) -> Iterator[str]:
    """A label of this test's own on everything omnilab creates; fails the test if any
    object with it is left at the end (and removes it, so one leak stays one failure)."""
    label = uuid.uuid4().hex[:12]
    monkeypatch.setenv("OMNILAB_LABELS", f"{TEST_LABEL}={label}")
    yield label
    deadline = time.monotonic() + 10
    left = labelled(label)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = labelled(label)
    if left:
        remove_labelled(label)
    assert not left, f"docker objects left behind: {left}"


if __name__ == "__main__":
    # `python -m tests.support.docker_support`: the tests' images ahead of a test run.
    build_test_images(Reporter(sys.stderr))
