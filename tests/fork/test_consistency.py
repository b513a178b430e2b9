"""What a fork sees while production is being written, and a fork killed half way."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import omnilab
from omnilab.progress import QuietReporter
from tests.fork.conftest import ReadOnly
from tests.support import EXPERIMENTS, OMNILAB, paused_at, stack_processes, wait_until

PAIR = f"{EXPERIMENTS / 'forked.py'}:ForkedPair"
BIG = f"{EXPERIMENTS / 'forked.py'}:ForkedBig"


def _fill_pairs(ro: ReadOnly, rows: int) -> None:
    from qdrant_client import models

    with ro.admin.pg() as conn:
        for table in ("left_side", "right_side"):
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)")
            conn.execute(f"INSERT INTO {table} SELECT i, 1 FROM generate_series(1, {rows}) i")
    r = ro.admin.redis()
    with r.pipeline() as pipe:
        for i in range(300):
            pipe.hset(f"pair:{i}", mapping={"a": 0, "b": 0})
        pipe.execute()
    r.close()
    q = ro.qdrant.admin()
    q.create_collection("pairs", vectors_config=models.VectorParams(size=2, distance="Dot"))
    q.upsert(
        "pairs",
        [models.PointStruct(id=i, vector=[1.0, 0.0], payload={"a": 0, "b": 0}) for i in range(300)],
    )
    q.close()


def _writer(ro: ReadOnly, stop: threading.Event, done: list[int]) -> None:
    """Production's writers: both tables changed in one transaction, each hash and each
    point rewritten whole, new ones added, as fast as they go."""
    from qdrant_client import models

    r = ro.admin.redis()
    q = ro.qdrant.admin()
    n = 0
    with ro.admin.pg() as conn:
        while not stop.is_set():
            n += 1
            k = 1 + n % 500
            with conn.transaction():
                conn.execute("UPDATE left_side SET v = v + 1 WHERE id = %s", (k,))
                conn.execute("UPDATE right_side SET v = v + 1 WHERE id = %s", (k,))
                if n % 10 == 0:
                    for table in ("left_side", "right_side"):
                        conn.execute(f"INSERT INTO {table} VALUES (%s, 3)", (1_000_000 + n,))
            r.hset(f"pair:{n % 400}", mapping={"a": n, "b": n})
            if n % 5 == 0:
                q.upsert(
                    "pairs",
                    [models.PointStruct(id=n % 400, vector=[1.0, 0.0], payload={"a": n, "b": n})],
                )
    r.close()
    q.close()
    done.append(n)


def test_one_snapshot_for_all_tables_and_whole_keys_and_points_under_writes(
    read_only: ReadOnly,
) -> None:
    _fill_pairs(read_only, rows=50_000)
    stop, done = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(read_only, stop, done))
    writer.start()
    try:
        time.sleep(0.3)
        run = omnilab.run(PAIR, reporter=QuietReporter())
    finally:
        stop.set()
        writer.join()
    assert run.ok, run.error
    s = run.summary
    assert done and done[0] > 50, done  # production was written all through the fork
    # PostgreSQL: both tables from one instant (the writer changes them in one transaction).
    assert s["left"] == s["right"], s
    # Redis and Qdrant: each key and each point copied as it was at one instant.
    assert s["torn_hashes"] == 0 and s["hashes"] >= 300
    assert s["torn_points"] == 0 and s["points"] >= 300
    seeds = {x["label"]: x for x in run.record.seeds}
    left = seeds["postgres table left_side"]["production"]
    right = seeds["postgres table right_side"]["production"]
    assert left["snapshot"] == right["snapshot"]


def test_a_fork_killed_half_way_leaves_nothing_behind(read_only: ReadOnly, workdir: Path) -> None:
    r = read_only.admin.redis()
    with r.pipeline(transaction=False) as pipe:
        for i in range(5000):
            pipe.set(f"big:{i}", "x" * 100)
        pipe.execute()
    r.close()
    before = read_only.admin.redis_state()
    with paused_at("seeding:redis", "run", BIG, cwd=workdir) as (proc, seen):
        assert stack_processes(), seen  # the run's Redis is up, the copy under way
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # The watcher removes the stack of its dead owner: no process, no state, no data.
    assert wait_until(lambda: not stack_processes(), timeout=20)
    from omnilab.config import get_settings
    from omnilab.runtimes.state import stacks_dir

    states = stacks_dir(get_settings().state_dir)
    assert wait_until(lambda: not list(states.glob("*.json")), timeout=10)
    assert read_only.admin.redis_state() == before


def test_ctrl_c_during_a_fork_stops_every_copy_and_leaves_nothing(
    read_only: ReadOnly, workdir: Path
) -> None:
    """Ctrl-C while the services are being copied at once: every copy stops at its next
    batch, the stack is removed, the command exits 130 with no traceback, and production
    is as it was."""
    # Tables long enough to be copying when the signal comes, on a fast machine too (a
    # million rows of two integers took 0.8 s on one).
    _fill_pairs(read_only, rows=3_000_000)
    r = read_only.admin.redis()
    with r.pipeline(transaction=False) as pipe:
        for i in range(20_000):
            pipe.set(f"pair:x{i}", "x" * 500)
        pipe.execute()
    r.close()
    before = read_only.admin.redis_state()
    proc = subprocess.Popen(
        [str(OMNILAB), "run", PAIR],
        cwd=workdir,
        env={**os.environ, "OMNILAB_REPORTER": "lines"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "forking 4 items" in line:
                break
        time.sleep(0.3)
        assert stack_processes(), seen
        began = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        rest = proc.stderr.read()
        proc.wait(timeout=60)
        stopped = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(seen) + rest
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    # The first table's copy (seconds long) was cut off, and soon.
    assert "left_side: 3,000,000 rows copied" not in text, text
    assert stopped < 5, text
    assert wait_until(lambda: not stack_processes(), timeout=20)
    assert read_only.admin.redis_state() == before
