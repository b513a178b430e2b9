"""Redis promotion's verification: the fast digest (DUMP serializations) against real
servers, its fallback when two servers encode the same data differently, and that it
tells real differences apart.

Production is the shared "production" Redis; the run's side is a Redis of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from omnilab import Redis, Stack
from omnilab.config import get_settings
from omnilab.progress import QuietReporter
from omnilab.services.promotable import ItemRecord, Progress
from omnilab.services.redis.copy import DUMP_DIGEST, ELEMENTS_DIGEST, combine
from omnilab.services.redis.promotion import RedisKeys, RedisPromoter
from tests.support.promotion_support import Production

Q = QuietReporter()


@pytest.fixture(name="source")
def source_fixture() -> Iterator[Stack]:
    with Stack(Redis(decode_responses=False), runtime="local", reporter=Q) as stack:
        yield stack


def fill(client: redis_lib.Redis) -> None:
    """Every type, small (listpack, intset) and large (hash tables, skiplists, quicklists)."""
    client.set("emb:s", "value")
    client.set("emb:n", 12345)
    client.set("emb:long", "x" * 5000, ex=3600)
    client.hset("emb:h", mapping={"a": "1", "b": "2"})
    client.hset("emb:H", mapping={f"f{i}": f"v{i}" for i in range(600)})
    client.sadd("emb:ints", 1, 2, 3)
    client.sadd("emb:set", "a", "b", "c")
    client.sadd("emb:SET", *[f"m{i}" for i in range(700)])
    client.rpush("emb:l", "x", "y", "z")
    client.rpush("emb:L", *range(2000))
    client.zadd("emb:z", {"a": 1.0, "b": 2.0})
    client.zadd("emb:Z", {f"m{i}": i / 7 for i in range(500)})
    client.xadd("emb:x", {"f": "1"}, id="1-0")
    client.pexpire("emb:H", 3_600_000)


def promoter(source: Stack) -> RedisPromoter:
    item = RedisKeys("emb:*")
    made = item.promoter(get_settings(), uuid.uuid4().hex[:12], source.endpoint("redis"), Q)
    assert isinstance(made, RedisPromoter)
    return made


def promote(source: Stack) -> ItemRecord:
    """Plan, stage (copy and verify) and switch, as ``omnilab promote`` does."""
    p = promoter(source)
    try:
        plan = p.plan("fail")
        assert plan.action == "create", plan
        record = ItemRecord(item=p.item.to_dict(), plan=plan)
        p.stage(record, Progress(Q, plan.label, plan.source_count, "keys"))
        p.switch(record)
        return record
    finally:
        p.close()


def contents(client: redis_lib.Redis) -> dict[bytes, Any]:
    """Every key's type, value (order-free for sets and hashes) and whether it has a TTL."""
    out: dict[bytes, Any] = {}
    for key in sorted(client.scan_iter("emb:*")):
        kind = client.type(key)
        value: Any = {
            b"string": lambda k: client.get(k),
            b"hash": lambda k: client.hgetall(k),
            b"set": lambda k: client.smembers(k),
            b"list": lambda k: client.lrange(k, 0, -1),
            b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"stream": lambda k: client.xrange(k),
        }[kind](key)
        out[key] = (kind, value, client.pttl(key) > 0)
    return out


def test_large_sets_and_hashes_verify_by_the_fast_digest(
    production: Production, source: Stack
) -> None:
    """Hash tables iterate in a different order on each server; their elements are
    digested instead of their serialization, so no fallback is needed."""
    fill(source.redis)
    assert source.redis.object("encoding", "emb:SET") == b"hashtable"
    record = promote(source)
    assert record.checksums["source"] == record.checksums["target"]
    assert record.checksums["target"]["method"] == DUMP_DIGEST
    assert record.checksums["target"]["keys"] == 13
    assert record.checksums["target"]["with_ttl"] == 2
    assert contents(production.redis()) == contents(source.redis)


@pytest.fixture(name="listpack_off")
def listpack_off_fixture(production: Production) -> Iterator[redis_lib.Redis]:
    """Production set to keep every hash and set in a hash table."""
    client = production.redis()
    names = ("hash-max-listpack-entries", "set-max-listpack-entries", "set-max-intset-entries")
    before = {n: next(iter(client.config_get(n).values())) for n in names}
    for name in names:
        client.config_set(name, 0)
    yield client
    for name, value in before.items():
        client.config_set(name, value)
    client.close()


def test_differently_encoded_production_falls_back_to_the_elements(
    production: Production, source: Stack, listpack_off: redis_lib.Redis
) -> None:
    fill(source.redis)
    assert source.redis.object("encoding", "emb:h") == b"listpack"
    record = promote(source)
    # Production converted the small hashes and sets: their DUMPs differ, their data not.
    assert listpack_off.object("encoding", "emb:h") == b"hashtable"
    assert record.checksums["source"] == record.checksums["target"]
    assert "method" not in record.checksums["target"]  # the encoding-free digest
    assert contents(production.redis()) == contents(source.redis)
    # Promoting again: production already holds these keys, though encoded otherwise.
    p = promoter(source)
    try:
        assert p.plan("fail").action == "nothing"
    finally:
        p.close()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: c.set("emb:s", "valuE"), id="string value"),
        pytest.param(lambda c: c.set("emb:n", 12346), id="integer value"),
        pytest.param(lambda c: c.hset("emb:H", "f599", "changed"), id="hash-table hash field"),
        pytest.param(lambda c: c.hset("emb:h", "b", "3"), id="listpack hash field"),
        pytest.param(lambda c: (c.srem("emb:SET", "m1"), c.sadd("emb:SET", "m1x")), id="set"),
        pytest.param(lambda c: c.lset("emb:L", 1000, "changed"), id="list element"),
        pytest.param(lambda c: c.zadd("emb:Z", {"m3": 99.0}), id="sorted set score"),
        pytest.param(lambda c: c.persist("emb:long"), id="a TTL removed"),
        pytest.param(lambda c: c.rename("emb:l", "emb:l2"), id="a name"),
        pytest.param(lambda c: c.delete("emb:x"), id="a key gone"),
    ],
)
@pytest.mark.parametrize("method", [DUMP_DIGEST, ELEMENTS_DIGEST])
def test_both_digests_see_every_kind_of_change(
    production: Production, source: Stack, change: Any, method: Any
) -> None:
    fill(source.redis)
    p = promoter(source)
    try:

        def checksum() -> dict[str, Any]:
            keys = sorted(source.redis.scan_iter("emb:*"))
            return combine(p._digest(source.redis, keys, b"emb:", method), method)

        before = checksum()
        assert before == checksum()  # stable while nothing changes
        change(source.redis)
        assert checksum() != before
    finally:
        p.close()
