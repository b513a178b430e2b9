"""The images a test session needs, built in the background from the session's start.

Building them is minutes of work on a new machine (and whenever omnilab changed, for the
images that hold it). Left to the tests, it happens when the first test that needs an
image asks for it, and every test process that reaches such a test meanwhile waits for
the machine's image lock: two or three processes idle for minutes. Started by the test
session as soon as its tests are known (tests/conftest.py), this process builds them
while the tests that need none run; the tests' own builds then find them current.

    python -m tests.support.prebuild cluster-host experiments codegen
"""

from __future__ import annotations

import sys

from omnilab.progress import Reporter
from omnilab.runtimes.docker.images import build
from tests.support.cluster import build_host_image
from tests.support.docker_support import build_test_images

#: Test modules (as their ids begin) and the image each needs besides the services'.
NEEDED = (
    ("tests/cluster/", "cluster-host"),
    ("tests/isolation/test_container.py", "experiments"),
    ("tests/workloads/sandbox/test_container.py", "codegen"),
)


def needed(test_ids: list[str]) -> list[str]:
    """The images the tests of ``test_ids`` need, in the order they are built."""
    return [name for prefix, name in NEEDED if any(i.startswith(prefix) for i in test_ids)]


def main(names: list[str]) -> None:
    reporter = Reporter(sys.stdout)
    build_test_images(reporter)
    for name in names:
        if name == "cluster-host":
            build_host_image()
        else:
            build([name], reporter)


if __name__ == "__main__":
    main(sys.argv[1:])
