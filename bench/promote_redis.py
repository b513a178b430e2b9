"""Redis promotion: 100,000 keys of mixed types with TTLs, from a run's Redis into
production, against a pipelined DUMP/RESTORE copy (the straightforward tool), same servers,
same run.

    python bench/promote_redis.py [--keys 100000] [--rounds 3]

Keys: strings, hashes, lists, sets, sorted sets and streams in equal parts, half of them
with a TTL. The peer is what a user would write: SCAN (COUNT 1000), then per batch of
1,000 keys one pipeline of DUMP + PTTL on the source and one of RESTORE on production. It
copies; it does not verify. omnilab's figure is the whole promotion of the item: plan
(SCAN of both sides), the staged copy (batches DUMPed by a script in the run's Redis and
RESTOREd by a script in production under staging names), verification (a digest of every
key computed on both servers and compared), and the MULTI/EXEC switch. Production is
emptied before every arm.

Goal: omnilab >= 1x the peer's speed.
"""

from __future__ import annotations

import argparse

from _promote import alternate, promote_item, report, state_dir

from omnilab import Redis, Stack
from omnilab.progress import QuietReporter
from omnilab.services.redis.promotion import RedisKeys


def fill(client, n: int) -> None:  # type: ignore[no-untyped-def]
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        key = f"emb:{i}"
        kind = i % 6
        if kind == 0:
            pipe.set(key, b"v" * 64)
        elif kind == 1:
            pipe.hset(key, mapping={"dim": 384, "model": "minilm", "norm": 1.0})
        elif kind == 2:
            pipe.rpush(key, 1, 2, 3, 4)
        elif kind == 3:
            pipe.sadd(key, "a", "b", str(i))
        elif kind == 4:
            pipe.zadd(key, {"x": 1.0, "y": 2.5})
        else:
            pipe.xadd(key, {"f": str(i)}, id="1-0")
        if i % 2:
            pipe.pexpire(key, 3_600_000)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def dump_restore(src, dst) -> None:  # type: ignore[no-untyped-def]
    cursor = 0
    while True:
        cursor, keys = src.scan(cursor, match="emb:*", count=1000)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with src.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.dump(key)
                    pipe.pttl(key)
                dumped = pipe.execute()
            with dst.pipeline(transaction=False) as pipe:
                for j, key in enumerate(batch):
                    payload, ttl = dumped[2 * j], dumped[2 * j + 1]
                    if payload is not None:
                        pipe.restore(key, max(ttl, 0), payload, replace=True)
                pipe.execute()
        if cursor == 0:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    state_dir()
    import os

    quiet = QuietReporter()
    with (
        Stack(Redis(decode_responses=False), runtime="local", reporter=quiet) as source,
        Stack(Redis(decode_responses=False), runtime="local", reporter=quiet) as production,
    ):
        os.environ["REDIS_URL"] = production.env["REDIS_URL"]
        src, dst = source.redis, production.redis
        fill(src, args.keys)
        print(f"redis promotion, {args.keys:,} keys of 6 types (half with TTLs)")
        print(f"  {source.services['redis'].version}, local runtime, both servers on this host")
        item = RedisKeys("emb:*")

        arms = {
            "peer: pipelined DUMP/RESTORE": lambda: dump_restore(src, dst),
            "omnilab promote": lambda: promote_item(item, source.endpoint("redis")),
        }
        results = alternate(arms, dst.flushall, args.rounds)
        assert dst.dbsize() == args.keys
    report(
        "promote_redis",
        results,
        "peer: pipelined DUMP/RESTORE",
        1.0,
        {"keys": args.keys, "rounds": args.rounds},
    )


if __name__ == "__main__":
    main()
