"""Stack start time, docker runtime: Redis + PostgreSQL + Qdrant ready in containers.

    pip install -e '.[bench]'      # testcontainers, the peer
    omnilab images build           # the local images both arms start (Qdrant's from a
                                   # binary: qdrant on PATH, or --binary)
    python bench/docker_start.py [--rounds 7]

Arms, alternating each round after one warm-up round each, all on the same local images
(omnilab/redis:7.0-bookworm, omnilab/postgres:15-bookworm, omnilab/qdrant:1.19.0-bookworm;
nothing is pulled):

- omnilab: ``Stack(Redis(), Postgres(), Qdrant(), runtime="docker").start()``, from
  constructing the stack (engine and image checks included) until all three answer a
  real query;
- testcontainers-python, as its documentation shows it: ``RedisContainer``, then
  ``PostgresContainer``, then ``QdrantContainer`` (with an API key, as omnilab's), one
  after another, each ``start()`` returning when its wait strategy passes (Ryuk, its
  reaper, off: its image cannot be pulled here);
- testcontainers with its polling interval cut from 1 s to 0.1 s (``TC_POOLING_INTERVAL``),
  to show how much of its time is waiting between polls;
- the floor: ``docker run`` of each image alone, polled every 10 ms from the host until
  it answers (PING; a PostgreSQL connection; Qdrant's /readyz), no network, no checks;
  PostgreSQL twice, with its data in the container's own layer (``docker run``'s
  default, and testcontainers') and on a tmpfs (omnilab's default).

Goal: omnilab <= 0.5x testcontainers (default settings).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import tempfile
import time
import uuid
import warnings
from typing import Any

from _common import summary, write

REDIS_IMAGE = "omnilab/redis:7.0-bookworm"
POSTGRES_IMAGE = "omnilab/postgres:15-bookworm"
QDRANT_IMAGE = "omnilab/qdrant:1.19.0-bookworm"
SCOPE = f"bench={uuid.uuid4().hex[:12]}"
LABELS = {"bench": SCOPE.split("=", 1)[1]}


def omnilab_start() -> tuple[float, dict[str, float]]:
    from omnilab import Postgres, Qdrant, Redis, Stack
    from omnilab.progress import QuietReporter

    began = time.perf_counter()
    stack = Stack(
        Redis(), Postgres(), Qdrant(), runtime="docker", gpu=False, reporter=QuietReporter()
    )
    stack.start()
    elapsed = time.perf_counter() - began
    assert stack.services["qdrant"].source.startswith(f"image {QDRANT_IMAGE}")
    stack.redis.ping()
    stack.postgres.execute("select 1")
    stack.qdrant.get_collections()
    t0 = time.perf_counter()
    stack.close()
    return elapsed, {"teardown": time.perf_counter() - t0}


def testcontainers_start(poll: float) -> tuple[float, dict[str, float]]:
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.qdrant import QdrantContainer
    from testcontainers.community.redis import RedisContainer
    from testcontainers.core.config import testcontainers_config

    testcontainers_config.sleep_time = poll
    # The same 120 s budget whatever the polling interval (its default: 120 polls of 1 s).
    testcontainers_config.max_tries = round(120 / poll)
    password = secrets.token_urlsafe(24)
    began = time.perf_counter()
    redis_c = RedisContainer(REDIS_IMAGE, password=password).with_kwargs(labels=LABELS)
    redis_c.start()
    postgres_c = PostgresContainer(
        POSTGRES_IMAGE, username="omnimind", password=password, dbname="exp", driver=None
    ).with_kwargs(labels=LABELS)
    postgres_c.start()
    qdrant_c = QdrantContainer(QDRANT_IMAGE, api_key=password).with_kwargs(labels=LABELS)
    qdrant_c.start()
    elapsed = time.perf_counter() - began
    client = qdrant_c.get_client()
    client.get_collections()
    client.close()
    t0 = time.perf_counter()
    redis_c.stop()
    postgres_c.stop()
    qdrant_c.stop()
    return elapsed, {"teardown": time.perf_counter() - t0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _until(check: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception:
            time.sleep(0.01)
    raise TimeoutError("not ready within 60 s")


def bare_start(which: str) -> float:
    """``docker run`` one image and poll it from the host: the floor for that image.
    ``postgres_tmpfs`` puts the data on a tmpfs, as omnilab does by default."""
    import httpx
    import psycopg
    import redis

    from omnilab.runtimes.docker.engine import connect

    client = connect()
    port = _free_port()
    password = secrets.token_urlsafe(24)
    began = time.perf_counter()
    if which == "redis":
        container = client.containers.run(
            REDIS_IMAGE,
            ["redis-server", "--requirepass", password],
            detach=True,
            ports={"6379/tcp": ("127.0.0.1", port)},
            labels=LABELS,
        )
        _until(lambda: redis.Redis(port=port, password=password, socket_timeout=1).ping())
    elif which == "qdrant":
        container = client.containers.run(
            QDRANT_IMAGE,
            detach=True,
            environment={"QDRANT__SERVICE__API_KEY": password},
            ports={"6333/tcp": ("127.0.0.1", port)},
            labels=LABELS,
            tmpfs={"/qdrant/storage": ""},
        )
        url = f"http://127.0.0.1:{port}/readyz"
        _until(lambda: httpx.get(url, timeout=1).raise_for_status())
    else:
        tmpfs = {"/var/lib/postgresql/data": ""} if which == "postgres_tmpfs" else None
        container = client.containers.run(
            POSTGRES_IMAGE,
            detach=True,
            environment={"POSTGRES_PASSWORD": password, "POSTGRES_USER": "omnimind"},
            ports={"5432/tcp": ("127.0.0.1", port)},
            labels=LABELS,
            tmpfs=tmpfs,
        )
        _until(
            lambda: psycopg.connect(
                host="127.0.0.1", port=port, user="omnimind", password=password, connect_timeout=1
            ).close()
        )
    elapsed = time.perf_counter() - began
    container.remove(force=True, v=True)
    return elapsed


def cleanup() -> None:
    from omnilab.runtimes.docker.engine import connect

    client = connect()
    selector = {"label": [SCOPE]}
    for container in client.containers.list(all=True, filters=selector, sparse=True):
        container.remove(force=True, v=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("OMNILAB_STATE_DIR", tempfile.mkdtemp(prefix="omnilab-bench-"))
    os.environ["OMNILAB_LABELS"] = SCOPE
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    # testcontainers' Qdrant client, with an API key over loopback HTTP, as omnilab's.
    warnings.filterwarnings("ignore", message="Api key is used with an insecure")
    arms = {
        "omnilab": omnilab_start,
        "testcontainers": lambda: testcontainers_start(1.0),
        "testcontainers_poll_0.1s": lambda: testcontainers_start(0.1),
    }
    print(f"docker stack start, Redis + PostgreSQL + Qdrant, {args.rounds} rounds")
    samples: dict[str, list[float]] = {name: [] for name in arms}
    teardown: dict[str, list[float]] = {name: [] for name in arms}
    floor: dict[str, list[float]] = {
        "redis": [],
        "postgres": [],
        "postgres_tmpfs": [],
        "qdrant": [],
    }
    try:
        for arm in arms.values():  # warm-up: page cache, imports, first connections
            arm()
        for which in floor:
            bare_start(which)
        for _ in range(args.rounds):
            for name, arm in arms.items():
                elapsed, extra = arm()
                samples[name].append(elapsed)
                teardown[name].append(extra["teardown"])
            for which in floor:
                floor[which].append(bare_start(which))
    finally:
        cleanup()
    results = {name: summary(s) for name, s in samples.items()}
    ratio = results["omnilab"]["median"] / results["testcontainers"]["median"]
    ratio_fast = results["omnilab"]["median"] / results["testcontainers_poll_0.1s"]["median"]
    floors = {which: summary(s) for which, s in floor.items()}
    for name, s in results.items():
        down = summary(teardown[name])["median"]
        print(
            f"  {name:26s} median {s['median']:.3f}s  (min {s['min']:.3f}, max {s['max']:.3f})"
            f"  teardown {down:.3f}s"
        )
    for which, s in floors.items():
        print(f"  floor: docker run {which:14s} median {s['median']:.3f}s  (min {s['min']:.3f})")
    print(f"  ratio omnilab/testcontainers:               {ratio:.2f}x  (goal <= 0.50x)")
    print(f"  ratio omnilab/testcontainers (0.1 s polls): {ratio_fast:.2f}x")
    path = write(
        "docker_start",
        {
            "rounds": args.rounds,
            "goal_ratio": 0.5,
            "images": [REDIS_IMAGE, POSTGRES_IMAGE, QDRANT_IMAGE],
            "start_s": results,
            "teardown_s": {n: summary(t) for n, t in teardown.items()},
            "floor_docker_run_s": floors,
            "ratio": ratio,
            "ratio_vs_fast_polling": ratio_fast,
        },
    )
    print(f"  results: {path}")


if __name__ == "__main__":
    main()
