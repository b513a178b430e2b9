"""The run's log stream itself (queue/live_log.py), on a real Redis: a chatty log goes in
pieces, not a round trip a line, and reads back byte for byte from any offset; Redis
away costs a flush nothing and the shipper catches up when it is back; a new attempt's
file starts the stream anew."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from omnilab.queue.live_log import PIECE, RETRY_S, LiveLogs, LogShipper, stream_key
from tests.support.queue_helpers import RedisServer


def shipper(redis: RedisServer, path: Path, run_id: str = "run1") -> LogShipper:
    path.touch()
    return LogShipper(redis.url, run_id, path, maxlen=10_000, ttl_s=60).follow()


def read_all(url: str, run_id: str, offset: int = 0) -> tuple[int, bytes]:
    """(where the stream's bytes from ``offset`` start, all of them)."""

    async def run() -> tuple[int, bytes]:
        live = LiveLogs(url)
        try:
            start, data = await live.read(run_id, offset, 0)
            while True:
                more_at, more = await live.read(run_id, start + len(data), 0)
                if not more:
                    return start, data
                assert more_at == start + len(data)
                data += more
        finally:
            await live.close()

    return asyncio.run(run())


def test_a_chatty_log_goes_in_pieces_and_reads_back_from_any_offset(
    redis_server: RedisServer, workdir: Path
) -> None:
    log = workdir / "output.log"
    ship = shipper(redis_server, log)
    with open(log, "a") as fh:
        for i in range(5000):
            fh.write(f"line {i} {'x' * (i % 50)}\n")
    ship.flush()  # the horse's flush before the outcome: all of it, now
    content = log.read_bytes()
    assert read_all(redis_server.url, "run1") == (0, content)
    entries = redis_server.client().xlen(stream_key("run1"))
    assert len(content) // PIECE <= entries < 5000 // 10  # pieces, a few polls' worth
    middle = len(content) // 2 + 3  # inside a piece, inside a line
    assert read_all(redis_server.url, "run1", middle) == (middle, content[middle:])
    ship.close()
    assert 0 < redis_server.client().ttl(stream_key("run1")) <= 60


def test_redis_away_costs_a_flush_nothing_and_the_shipper_catches_up(
    redis_server: RedisServer, workdir: Path
) -> None:
    log = workdir / "output.log"
    ship = shipper(redis_server, log)
    with open(log, "a", buffering=1) as fh:
        fh.write("before\n")
        ship.flush()
        redis_server.kill()
        began = time.monotonic()
        for i in range(100):
            fh.write(f"during {i}\n")
            ship.flush()
        assert time.monotonic() - began < 1.5, "flushes waited for Redis"
        redis_server.start()  # empty: what the old server held is gone
        time.sleep(RETRY_S + 0.5)
        fh.write("after\n")
        ship.flush()
    content = log.read_bytes()
    # From where it stood when Redis went away: the lines of the outage, then the rest.
    at = len(b"before\n")
    assert read_all(redis_server.url, "run1") == (at, content[at:])
    ship.close()


def test_a_new_attempts_file_starts_the_stream_anew(
    redis_server: RedisServer, workdir: Path
) -> None:
    first = shipper(redis_server, workdir / "host-a.log")
    (workdir / "host-a.log").write_text("attempt 1 on host a\n" * 100)
    first.close()
    # The next attempt, on another host: a file of its own, shorter than the stream.
    second = shipper(redis_server, workdir / "host-b.log")
    (workdir / "host-b.log").write_text("attempt 2 on host b\n")
    second.close()
    assert read_all(redis_server.url, "run1") == (0, b"attempt 2 on host b\n")
