"""The rq baseline's task: report the moment it starts, and nothing else."""

import os
import time

import redis

_bench = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def noop() -> None:
    _bench.rpush("bench:began", repr(time.time()))
