"""Forking Redis keys from production into a run's Redis.

Production is sent read commands only (``SCAN``, ``TYPE``, ``PTTL``, ``GET``, ``LRANGE``,
``SMEMBERS``, ``HGETALL``, ``ZRANGE``, ``XINFO STREAM``; ``DUMP`` for a module's type): an
ACL user with ``+@read`` alone is enough, and no script runs there. Each key is read with
its type's command and written into the run's Redis with their counterparts, TTL
included: promotion's element copy (:func:`.copy.read_value`,
:func:`.promotion._write_value`) in the other direction.

**Verification.** The digest that ignores the encoding (``elements_digest.lua``) is
computed twice, independently: by this module over the replies production gave (the same
formula in Python, :func:`key_digest`), and by the run's Redis over the keys it holds.
Counts, TTL counts and the XOR of every key's digest must match.

**Consistency.** Each key is read by one command, so each key is copied as it was at one
instant; keys are read a batch at a time, so two keys may come from different instants.
A key created in production during the fork is copied if the scan met it; a key deleted
before it was read is left out (counted as ``gone_meanwhile``). There is no snapshot of
the whole key space: Redis has none a read-only user may take.

**Selection.** ``sample=`` keeps a key when a hash of its name and the seed falls under
the fraction; ``limit=`` keeps the first keys in byte order of their names.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omnilab.services.forking import Forker, ForkFailed, SeedMissing, connection_error
from omnilab.services.redis.copy import (
    BATCH,
    ELEMENT_TYPES,
    ELEMENTS_DIGEST,
    RESERVED_BYTES,
    SCAN_COUNT,
    Batch,
    combine,
    pairs,
    read_value,
    write_value,
)

if TYPE_CHECKING:
    import redis as redis_lib

    from omnilab.services.base import Endpoint
    from omnilab.services.promotable import Progress, Promotable


def _ordered(items: Sequence[bytes]) -> tuple[bytes, int]:
    return b"".join(b"%d:%s" % (len(x), x) for x in items), sum(len(x) for x in items)


def _unordered(items: Sequence[bytes]) -> tuple[bytes, int]:
    """``unordered.lua``: the XOR of each element's SHA-1 (first 64 bits), in hex."""
    xor = 0
    for e in items:
        xor ^= int(hashlib.sha1(e).hexdigest()[:16], 16)
    return b"%016x" % xor, sum(len(e) for e in items)


def key_digest(kind: bytes, name: bytes, value: Any) -> tuple[int, int]:
    """One key's digest as ``elements_digest.lua`` computes it in the server (its type,
    its name relative to the item's prefix, its value), from the reply of
    :func:`.copy.read_value`; returns (the digest's first 128 bits, size)."""

    if kind == b"string":
        body, n = value, len(value)
    elif kind in (b"list",):
        body, n = _ordered(value)
    elif kind == b"zset":
        body, n = _ordered([x for member, score in value for x in (member, score)])
    elif kind == b"set":
        body, n = _unordered(list(value))
    elif kind == b"hash":
        body, n = _unordered([b"%d:%s%s" % (len(f), f, v) for f, v in value.items()])
    elif kind == b"stream":
        parts = []
        n = 0
        for entry_id, fields in pairs(value).get(b"entries") or []:
            text, m = _ordered(fields)
            parts.append(entry_id + b"#" + text)
            n += m
        body = b"\n".join(parts)
    else:
        body, n = value, len(value)
    h = hashlib.sha1(kind + b"\n" + name + b"\n" + body).hexdigest()
    return int(h[:32], 16), n


#: Keys whose memory is asked for a fork's size estimate.
_SAMPLED = 100


class RedisForker(Forker):
    bound = "memory"
    consistency = (
        "per key: each key read by one command (as it was at one instant); keys read a "
        "batch at a time, with no snapshot of the whole key space"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = self.settings.redis_url
        self._prod: redis_lib.Redis | None = None
        self._keys: dict[str, list[bytes]] = {}

    @property
    def prod(self) -> redis_lib.Redis:
        import redis as redis_lib

        if self._prod is None:
            try:
                self._prod = redis_lib.Redis.from_url(self.url, socket_connect_timeout=10)
            except ValueError as exc:
                raise connection_error("Redis", self.url, str(exc)) from None
        return self._prod

    def close(self) -> None:
        if self._prod is not None:
            self._prod.close()
            self._prod = None

    def _reading(self, action: Any) -> Any:
        """Run ``action()`` against production; connection and credential errors become
        one line naming production's Redis."""
        import redis as redis_lib

        try:
            return action()
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
            raise connection_error("Redis", self.url, str(exc) or type(exc).__name__) from None
        except (redis_lib.AuthenticationError, redis_lib.exceptions.NoPermissionError) as exc:
            raise connection_error("Redis", self.url, f"credentials refused: {exc}") from None

    # -- check ------------------------------------------------------------------------------

    def check(self) -> dict[str, int]:
        counts = {}
        for item in self.items:
            pattern = item.target

            def scan(pattern: str = pattern) -> list[bytes]:
                found = set(self.prod.scan_iter(match=pattern, count=SCAN_COUNT))
                return sorted(k for k in found if not k.startswith(RESERVED_BYTES))

            keys = self._reading(scan)
            if not keys:
                raise SeedMissing(
                    f"seed {item.label}: production Redis "
                    f"({item.production_url(self.settings)}) has no key matching {pattern}"
                )
            chosen = [k for k in keys if item.selection.keeps(k)]
            if item.selection.limit is not None:
                chosen = chosen[: item.selection.limit]
            self._keys[item.label] = chosen
            counts[item.label] = len(chosen)
            size = self._estimate(chosen)
            if size is not None:
                self.sizes[item.label] = size
        return counts

    def _estimate(self, keys: list[bytes]) -> int | None:
        """The keys' memory in production, from ``MEMORY USAGE`` (a read command) of up
        to :data:`_SAMPLED` of them spread over the list; None where it is refused."""
        import redis as redis_lib

        if not keys:
            return 0
        step = max(1, len(keys) // _SAMPLED)
        sampled = keys[::step][:_SAMPLED]
        try:
            with self.prod.pipeline(transaction=False) as pipe:
                for key in sampled:
                    pipe.memory_usage(key, samples=0)
                used = [u for u in pipe.execute() if isinstance(u, int)]
        except redis_lib.RedisError:
            return None
        if not used:
            return 0
        return sum(used) * len(keys) // len(used)

    # -- copy -------------------------------------------------------------------------------

    def copy(self, item: Promotable, target: Endpoint, progress: Progress) -> dict[str, Any]:
        import redis as redis_lib

        from omnilab.services.redis import scripts

        keys = self._keys[item.label]
        prod_prefix = item.target_prefix.encode()  # type: ignore[attr-defined]
        run_prefix = item.source_prefix.encode()  # type: ignore[attr-defined]
        run = redis_lib.Redis(
            host=target.host,
            port=target.port,
            password=target.credentials.password,
            socket_connect_timeout=10,
        )
        began = time.monotonic()
        production: list[Batch] = []
        copied: list[bytes] = []
        try:
            for start in range(0, len(keys), BATCH):
                batch = keys[start : start + BATCH]
                digest, names = self._reading(
                    lambda batch=batch: self._copy_batch(batch, prod_prefix, run_prefix, run)
                )
                production.append(digest)
                copied += names
                progress.advance(len(batch))
            done = time.monotonic()
            script = run.register_script(scripts.ELEMENTS_DIGEST)
            theirs = []
            for start in range(0, len(copied), BATCH):
                chunk = copied[start : start + BATCH]
                xor, count, size, ttls = script(keys=chunk, args=[run_prefix, b""], client=run)
                theirs.append(Batch(int(xor, 16), int(count), int(size), int(ttls)))
        except redis_lib.ResponseError as exc:
            raise ForkFailed(
                f"seed {item.label}: the run's Redis refused the copy: {exc}"
            ) from None
        finally:
            run.close()
        ours = combine(production, ELEMENTS_DIGEST)
        run_sum = combine(theirs, ELEMENTS_DIGEST)
        provenance: dict[str, Any] = {
            "production": {
                "pattern": item.target,
                "keys": ours["keys"],
                "selected": len(keys),
                "gone_meanwhile": len(keys) - ours["keys"],
                "checksum": ours,
            },
            "run": {"pattern": item.name, "keys": run_sum["keys"], "checksum": run_sum},
            "seconds": {
                "copy": round(done - began, 4),
                "verify": round(time.monotonic() - done, 4),
            },
        }
        if run_sum != ours:
            raise ForkFailed(
                f"seed {item.label}: the run's copy differs from what production returned "
                f"({run_sum['keys']:,} keys of {ours['keys']:,}; digests {run_sum['xor128']} "
                f"and {ours['xor128']})"
            )
        return provenance

    def production_checksum(
        self, item: Promotable, recorded: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The digest of the keys the seed selects now, as the fork computed it over what
        production returned (read commands only)."""

        try:
            self.check()
        except SeedMissing:
            return None
        keys = self._keys[item.label]
        cut = len(item.target_prefix.encode())  # type: ignore[attr-defined]
        found = self._reading(lambda: read_digests(self.prod, keys, cut))
        xor = size = ttls = 0
        for digest, n, ttl in found.values():
            xor ^= digest
            size += n
            ttls += ttl
        return combine([Batch(xor, len(found), size, ttls)], ELEMENTS_DIGEST)

    def _copy_batch(
        self, batch: list[bytes], prod_prefix: bytes, run_prefix: bytes, run: redis_lib.Redis
    ) -> tuple[Batch, list[bytes]]:
        """Read a batch from production (TYPE, then PTTL and the value), write it into the
        run's Redis; returns the digest of what production returned and the run's names."""

        cut = len(prod_prefix)
        with self.prod.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.type(key)
            types = pipe.execute()
        with self.prod.pipeline(transaction=False) as pipe:
            for key, kind in zip(batch, types, strict=True):
                pipe.pttl(key)
                if kind in ELEMENT_TYPES:
                    read_value(pipe, key, kind)
                else:
                    pipe.dump(key)  # a module's type (or a key gone: none)
            replies = pipe.execute(raise_on_error=False)
        xor = count = size = ttls = 0
        names: list[bytes] = []
        with run.pipeline(transaction=False) as out:
            for i, (key, kind) in enumerate(zip(batch, types, strict=True)):
                pttl, value = replies[2 * i], replies[2 * i + 1]
                if isinstance(value, Exception):
                    raise value
                name = run_prefix + key[cut:]
                if kind in ELEMENT_TYPES:
                    if not write_value(out, name, kind, value):
                        continue  # gone since the scan
                elif value is None or kind == b"none":
                    continue
                else:
                    out.restore(name, 0, value, replace=True)
                if isinstance(pttl, int) and pttl > 0:
                    out.pexpire(name, pttl)
                    ttls += 1
                digest, n = key_digest(kind, key[cut:], value)
                xor ^= digest
                count += 1
                size += n
                names.append(name)
            out.execute()
        return Batch(xor, count, size, ttls), names


def read_digests(
    client: redis_lib.Redis, keys: Sequence[bytes], cut: int
) -> dict[bytes, tuple[int, int, bool]]:
    """Each existing key's digest (:func:`key_digest`, of its name less its first ``cut``
    bytes), size and whether it has a TTL, by that relative name: read commands only
    (``TYPE``, ``PTTL`` and the value's), a batch at a time, so that a ``+@read`` user
    can be asked and nothing is written."""

    out: dict[bytes, tuple[int, int, bool]] = {}
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.type(key)
            types = pipe.execute()
        with client.pipeline(transaction=False) as pipe:
            for key, kind in zip(batch, types, strict=True):
                pipe.pttl(key)
                if kind in ELEMENT_TYPES:
                    read_value(pipe, key, kind)
                else:
                    pipe.dump(key)
            replies = pipe.execute(raise_on_error=False)
        for i, (key, kind) in enumerate(zip(batch, types, strict=True)):
            pttl, value = replies[2 * i], replies[2 * i + 1]
            if isinstance(value, Exception):
                raise value
            if kind == b"none" or value is None or (kind != b"stream" and not value):
                continue  # gone since the scan
            digest, n = key_digest(kind, key[cut:], value)
            out[key[cut:]] = (digest, n, isinstance(pttl, int) and pttl > 0)
    return out
