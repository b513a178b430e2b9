"""Redis fork's copy (``DUMP`` from production, ``RESTORE`` in the run's Redis) and its
verification: this process's digest of production's payloads against the digest the
run's server computes, for every type and encoding; the element way for sets and hashes
production holds in hash tables, and for keys the run's server encodes otherwise; and
the check of production since the fork by either method.

Production is the shared "production" Redis; the run's side is a Redis of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from omnilab import Redis, Stack
from omnilab.config import get_settings
from omnilab.fork import Fork
from omnilab.progress import QuietReporter
from omnilab.promote import RedisKeys
from omnilab.services.redis.copy import DUMP_DIGEST, ELEMENTS_DIGEST
from omnilab.services.redis.fork import RedisForker
from tests.services.redis.test_promotion_digest import contents, fill
from tests.support.promotion_support import Production

Q = QuietReporter()


@pytest.fixture(name="run")
def run_fixture() -> Iterator[Stack]:
    with Stack(Redis(decode_responses=False), runtime="local", reporter=Q) as stack:
        yield stack


def fork(run: Stack) -> dict[str, Any]:
    """Fork ``emb:*`` into the run's Redis as a run does; its provenance."""
    made = Fork.prepare([RedisKeys("emb:*")], get_settings(), Q)
    (record,) = made.copy(run)
    return record


@pytest.fixture(name="config")
def config_fixture(production: Production) -> Iterator[redis_lib.Redis]:
    """Production's client; the encoding settings a test changes are put back after."""
    client = production.redis()
    names = (
        "hash-max-listpack-entries",
        "set-max-listpack-entries",
        "set-max-intset-entries",
        "zset-max-listpack-entries",
    )
    before = {n: next(iter(client.config_get(n).values())) for n in names}
    yield client
    for name, value in before.items():
        client.config_set(name, value)
    client.close()


def test_every_type_and_encoding_verifies_by_the_dump_digest(
    production: Production, run: Stack
) -> None:
    """Strings, listpacks, intsets, quicklists, skiplists, streams, TTLs: this process's
    digest of production's payloads equals the run's server's of what it restored; only
    the sets and hashes in hash tables (whose payload order is the server's) are read
    and digested element by element."""
    prod = production.redis()
    fill(prod)
    record = fork(run)
    assert record["production"]["checksum"]["method"] == DUMP_DIGEST
    assert record["production"]["checksum"] == record["run"]["checksum"]
    assert record["production"]["keys"] == 13
    assert record["production"]["checksum"]["with_ttl"] == 2
    # emb:H and emb:SET are hash tables in production.
    assert record["run"]["verified_by_elements"] == 2
    assert contents(run.redis) == contents(prod)


def test_a_production_holding_every_set_and_hash_in_a_hash_table(
    production: Production, run: Stack, config: redis_lib.Redis
) -> None:
    for name in ("hash-max-listpack-entries", "set-max-listpack-entries", "set-max-intset-entries"):
        config.config_set(name, 0)
    fill(config)
    assert config.object("encoding", "emb:h") == b"hashtable"
    record = fork(run)
    assert record["run"]["verified_by_elements"] == 5  # every set and hash
    assert record["production"]["keys"] == record["run"]["keys"] == 13
    # The run's Redis keeps the small ones as listpacks: its serialization differs.
    assert run.redis.object("encoding", "emb:h") == b"listpack"
    assert record["production"]["checksum"] != record["run"]["checksum"]
    assert contents(run.redis) == contents(config)


def test_keys_the_run_encodes_otherwise_go_the_element_way(
    production: Production, run: Stack, config: redis_lib.Redis
) -> None:
    """Production keeps a 500-member sorted set and a 600-field hash as listpacks; the
    run's Redis (default settings) converts them as it restores them, so their digests
    differ by encoding: each is read again element by element and verified that way."""
    config.config_set("zset-max-listpack-entries", 1000)
    config.config_set("hash-max-listpack-entries", 1000)
    fill(config)
    assert config.object("encoding", "emb:Z") == b"listpack"
    assert config.object("encoding", "emb:H") == b"listpack"
    record = fork(run)
    assert run.redis.object("encoding", "emb:Z") == b"skiplist"
    assert record["run"]["verified_by_elements"] == 3  # emb:Z, emb:H and emb:SET
    assert record["production"]["keys"] == record["run"]["keys"] == 13
    # Both sides by DUMP: the run's serialization of the converted keys differs.
    assert record["production"]["checksum"] != record["run"]["checksum"]
    assert contents(run.redis) == contents(config)


@pytest.mark.parametrize("method", [DUMP_DIGEST, ELEMENTS_DIGEST])
def test_production_since_the_fork_by_either_method(
    production: Production, run: Stack, method: str
) -> None:
    """The check a promotion makes: production's checksum now, by the method recorded
    (``dump`` since this copy; ``elements`` in runs forked before it), equals the one
    at fork time while nothing changed, and differs once a value changed."""
    prod = production.redis()
    fill(prod)
    record = fork(run)
    recorded = record["production"]["checksum"]
    if method == ELEMENTS_DIGEST:
        recorded = {k: v for k, v in recorded.items() if k not in ("method", "xor160")}
    item = RedisKeys("emb:*")

    def now() -> dict[str, Any] | None:
        forker = RedisForker([item], get_settings(), Q)
        try:
            return forker.production_checksum(item, recorded)
        finally:
            forker.close()

    same = now()
    assert same is not None
    if method == DUMP_DIGEST:
        assert same == recorded
    else:
        assert "method" not in same and same["keys"] == 13
    prod.hset("emb:H", "f1", "changed")
    assert now() != same


def test_a_production_user_that_may_not_dump_gets_the_element_copy(
    production: Production, run: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user allowed to read values but not ``DUMP`` them (``+@read -dump``): every key
    goes element by element, verified by the digest that ignores the encoding."""
    from urllib.parse import urlsplit

    prod = production.redis()
    fill(prod)
    prod.acl_setuser(
        "no_dump",
        enabled=True,
        passwords=["+no-dump-secret"],
        keys=["*"],
        categories=["-@all", "+@read"],
        commands=["-dump"],
        reset=True,
    )
    try:
        parts = urlsplit(production.redis_url)
        monkeypatch.setenv(
            "REDIS_URL", f"redis://no_dump:no-dump-secret@{parts.netloc.split('@')[-1]}/0"
        )
        record = fork(run)
    finally:
        prod.acl_deluser("no_dump")
    assert "method" not in record["production"]["checksum"]
    assert record["production"]["checksum"] == record["run"]["checksum"]
    assert record["production"]["keys"] == 13
    assert contents(run.redis) == contents(prod)
