"""Reading and writing Redis keys' values, and the digests that verify a copy: what
promotion (the run's keys into production) and fork (production's keys into the run's
Redis) share.

A key is copied either whole (``DUMP`` and ``RESTORE``, promotion's usual route) or
element by element with its type's own commands (:func:`read_value` and
:func:`write_value`: a fork, which production may only read, and a promotion into a
server that cannot read the run's ``DUMP`` format). A copy is verified by comparing
per-batch digests (:class:`Batch`), combined into the checksum a record keeps
(:func:`combine`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, Literal, NamedTuple

#: Keys under these prefixes belong to the machinery, not to anyone's data: omnilab's staging
#: copies and replaced keys, and the queue's (the run queue shares ``REDIS_URL`` with
#: production): rq's, the runs' live logs, the host tasks' states and replies. They are
#: never promoted, forked, counted as production data of a pattern, or overwritten (a
#: ``RedisKeys("*")`` replaced would otherwise remove the live logs of running runs).
#: Other ``omnilab:`` keys, such as the completion cache, are data.
STAGING = "omnilab:staging:"
REPLACED = "omnilab:replaced:"
RESERVED = (STAGING, REPLACED, "rq:", "omnilab:log:", "omnilab:task:")
RESERVED_BYTES = tuple(p.encode() for p in RESERVED)
BATCH = 1000
SCAN_COUNT = 1000
#: The types the element copy carries (``TYPE``'s answers).
ELEMENT_TYPES = (b"string", b"list", b"set", b"hash", b"zset", b"stream")
#: Elements per write command in the element copy (arguments of one SADD, RPUSH...).
ELEMENTS_PER_WRITE = 1000


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in slices of ``size`` (the last one shorter)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


#: How a key set's checksum is computed: from ``DUMP`` serializations (the default), or from
#: every element whatever the encoding (when two servers encode the same data differently).
#: Checksums of the second kind are recorded without a ``method``, as they always were.
Method = Literal["dump", "elements"]
DUMP_DIGEST: Final = "dump"
ELEMENTS_DIGEST: Final = "elements"


class Batch(NamedTuple):
    """The digest of one batch of keys: the XOR of its keys' digests, and counts."""

    xor: int
    keys: int  # not `count`, which would hide tuple.count
    size: int
    ttls: int


def combine(batches: Iterable[Batch], method: Method = DUMP_DIGEST) -> dict[str, Any]:
    """A key set's checksum, as recorded: counts and the XOR of every key's digest."""
    xor = count = size = ttls = 0
    for b in batches:
        xor ^= b.xor
        count += b.keys
        size += b.size
        ttls += b.ttls
    if method == ELEMENTS_DIGEST:
        return {"keys": count, "with_ttl": ttls, "bytes": size, "xor128": f"{xor:032x}"}
    return {
        "method": method,
        "keys": count,
        "with_ttl": ttls,
        "bytes": size,
        "xor160": f"{xor:040x}",
    }


def method_of(checksum: dict[str, Any] | None) -> Method:
    """The method a recorded checksum was computed with."""
    if checksum and checksum.get("method") != DUMP_DIGEST:
        return ELEMENTS_DIGEST
    return DUMP_DIGEST


def xor_hexes(hexes: bytes) -> int:
    """The XOR of concatenated 40-digit SHA-1 hex digests."""
    xor = 0
    for i in range(0, len(hexes), 40):
        xor ^= int(hexes[i : i + 40], 16)
    return xor


def read_value(pipe: Any, key: bytes, kind: bytes) -> None:
    """Queue the reads of a key's whole value (one reply; two for a stream: its entries
    and its last id)."""
    if kind == b"string":
        pipe.get(key)
    elif kind == b"list":
        pipe.lrange(key, 0, -1)
    elif kind == b"set":
        pipe.smembers(key)
    elif kind == b"hash":
        pipe.hgetall(key)
    elif kind == b"zset":
        # Scores as the server prints them (exact doubles), not through a float.
        pipe.zrange(key, 0, -1, withscores=True, score_cast_func=bytes)
    elif kind == b"stream":
        pipe.execute_command("XINFO", "STREAM", key, "FULL", "COUNT", 0)
    else:
        pipe.exists(key)  # a placeholder reply: the plan refused other types


def write_value(pipe: Any, name: bytes, kind: bytes, value: Any) -> bool:
    """Queue the writes that make ``name`` hold ``value``; False when there is nothing
    to write (the key was gone when read)."""
    if value is None or (kind != b"stream" and not value):
        return False
    if kind == b"string":
        pipe.set(name, value)
    elif kind == b"list":
        for chunk in chunks(value, ELEMENTS_PER_WRITE):
            pipe.rpush(name, *chunk)
    elif kind == b"set":
        for chunk in chunks(sorted(value), ELEMENTS_PER_WRITE):
            pipe.sadd(name, *chunk)
    elif kind == b"hash":
        for chunk in chunks(list(value.items()), ELEMENTS_PER_WRITE):
            pipe.hset(name, mapping=dict(chunk))
    elif kind == b"zset":
        scored = [(member, score) for member, score in value]
        for chunk in chunks(scored, ELEMENTS_PER_WRITE):
            pipe.execute_command("ZADD", name, *(x for m, s in chunk for x in (s, m)))
    elif kind == b"stream":
        info = pairs(value)
        entries = info.get(b"entries") or []
        for entry_id, fields in entries:
            pipe.execute_command("XADD", name, entry_id, *fields)
        if not entries:  # an empty stream: made by adding an entry and deleting it
            pipe.execute_command("XADD", name, "0-1", "_", "_")
            pipe.execute_command("XDEL", name, "0-1")
        pipe.execute_command("XSETID", name, info[b"last-generated-id"])
    else:
        return False
    return True


def pairs(flat: Any) -> dict[bytes, Any]:
    """A RESP2 map (a flat [name, value, ...] list) as a dict; RESP3 maps come as dicts."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))
