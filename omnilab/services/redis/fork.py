"""Forking Redis keys from production into a run's Redis.

Production is sent read commands only (``SCAN``, ``DUMP`` and ``PTTL``; for the keys that
go the element way ``TYPE``, ``GET``, ``LRANGE``, ``SMEMBERS``, ``HGETALL``, ``ZRANGE``,
``XINFO STREAM``): an ACL user with ``+@read`` alone is enough, and no script runs there.

**The copy** (:class:`_DumpCopy`): production's ``DUMP`` and ``PTTL`` of a batch of keys,
read a batch ahead, are ``RESTORE``d in the run's Redis by one script call per batch
(``restore_digest.lua``), which also returns the digest of what landed. Commands go out
packed by hiredis on one connection (:func:`send`): redis-py's pipeline costs six times
the CPU per command, which for 100,000 keys was most of the fork's own time.

**Verification.** The digest of each key's serialization (``key_digest.lua``: its name
relative to the prefix, whether it has a TTL, its ``DUMP`` payload less the RDB version and
CRC) is computed twice, independently: by this module over the payloads production
returned (:func:`dump_digest`), and by the run's Redis over the keys it holds. Sets and
hashes production holds in a hash table (whose payload follows the server's iteration
order), and keys whose two digests differ because the run's server encodes them otherwise
(another version or setting), are read again element by element, written that way and
compared with the digest that ignores the encoding (``elements_digest.lua`` and
:func:`key_digest`). A run's Redis that cannot read production's ``DUMP`` format, or a
production user that may not ``DUMP``, gets every key that way (:class:`_ElementCopy`).

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
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from omnilab.services.forking import Forker, ForkFailed, SeedMissing, connection_error
from omnilab.services.redis.copy import (
    BATCH,
    DUMP_DIGEST,
    ELEMENT_TYPES,
    ELEMENTS_DIGEST,
    RESERVED_BYTES,
    SCAN_COUNT,
    Batch,
    combine,
    method_of,
    pairs,
    read_value,
    write_value,
    xor_hexes,
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

        keys = self._keys[item.label]
        cut = len(item.target_prefix.encode())  # type: ignore[attr-defined]
        run_prefix = item.source_prefix.encode()  # type: ignore[attr-defined]
        run = redis_lib.Redis(
            host=target.host,
            port=target.port,
            password=target.credentials.password,
            socket_connect_timeout=10,
        )
        prod_prefix = item.target_prefix.encode()  # type: ignore[attr-defined]
        began = time.monotonic()
        try:
            try:
                copied: _DumpCopy | _ElementCopy = _DumpCopy(
                    self, keys, prod_prefix, run_prefix, run
                ).run(progress)
            except (redis_lib.ResponseError, _NoDump) as exc:
                if not isinstance(exc, _NoDump) and not _unreadable(exc):
                    raise
                # The run's Redis cannot read production's DUMP format (an older server),
                # or production's user may not DUMP: every key goes element by element,
                # both sides digested that way.
                _delete(run, [run_prefix + k[cut:] for k in keys])
                copied = self._copy_elements(keys, prod_prefix, run_prefix, run, progress)
            done = time.monotonic()
            copied.verify(run)
        except redis_lib.ResponseError as exc:
            raise ForkFailed(
                f"seed {item.label}: the run's Redis refused the copy: {exc}"
            ) from None
        finally:
            run.close()
        ours, theirs = copied.checksums()
        provenance: dict[str, Any] = {
            "production": {
                "pattern": item.target,
                "keys": ours["keys"],
                "selected": len(keys),
                "gone_meanwhile": len(keys) - ours["keys"],
                "checksum": ours,
            },
            "run": {"pattern": item.name, "keys": theirs["keys"], "checksum": theirs},
            "seconds": {
                "copy": round(done - began, 4),
                "verify": round(time.monotonic() - done, 4),
            },
        }
        if copied.by_elements:
            provenance["run"]["verified_by_elements"] = copied.by_elements
        failure = copied.failure()
        if failure:
            raise ForkFailed(
                f"seed {item.label}: the run's copy differs from what production returned "
                f"({failure})"
            )
        return provenance

    def _copy_elements(
        self,
        keys: list[bytes],
        prod_prefix: bytes,
        run_prefix: bytes,
        run: redis_lib.Redis,
        progress: Progress,
    ) -> _ElementCopy:
        """Every key read with its type's commands and written with their counterparts,
        for a run's Redis that cannot read production's ``DUMP`` payloads."""
        copied = _ElementCopy(run_prefix)
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            digest, names = self._reading(
                lambda batch=batch: self._copy_batch(batch, prod_prefix, run_prefix, run)
            )
            copied.production.append(digest)
            copied.names += names
            progress.advance(len(batch))
        return copied

    def production_checksum(
        self, item: Promotable, recorded: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The digest of the keys the seed selects now, by the method the fork recorded
        (read commands only): from each key's ``DUMP``, or element by element for a
        fork recorded that way (before the ``DUMP`` route, or into an older Redis)."""

        try:
            self.check()
        except SeedMissing:
            return None
        keys = self._keys[item.label]
        cut = len(item.target_prefix.encode())  # type: ignore[attr-defined]
        if method_of(recorded) == DUMP_DIGEST:
            digests = self._reading(lambda: read_dump_digests(self.prod, keys, cut))
            return combine([_fold(digests.values())], DUMP_DIGEST)
        found = self._reading(lambda: read_digests(self.prod, keys, cut))
        return combine([_fold(found.values())], ELEMENTS_DIGEST)

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


#: ``DUMP``'s first byte for a set and a hash held in a hash table: their payload follows
#: the server's iteration order, so their digest is of their elements (``key_digest.lua``).
_HASHED = (2, 4)


def dump_digest(
    relative: bytes, payload: bytes, pttl: int, elements: Any = None
) -> tuple[int, int]:
    """One key's digest as ``key_digest.lua`` computes it in a server, from production's
    ``DUMP`` payload, ``PTTL`` and, for a set or hash in a hash table, its elements
    (``SMEMBERS``/``HGETALL``); returns (the digest, as an integer, and its size)."""
    kind = payload[0]
    if kind == 2:
        body, n = _unordered(list(elements))
        body = b"set:" + body
    elif kind == 4:
        body, n = _unordered([b"%d:%s%s" % (len(f), f, v) for f, v in elements.items()])
        body = b"hash:" + body
    else:
        body = payload[:-10]  # less the RDB version and CRC64, which differ by version
        n = len(body)
    mark = b"T" if pttl > 0 else b"P"
    text = b"%d:%s%s%s" % (len(relative), relative, mark, body)
    return int.from_bytes(hashlib.sha1(text).digest(), "big"), n


_DUMP_PTTL = (b"DUMP", b"PTTL")


def send(client: redis_lib.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one write on one of ``client``'s connections and read every
    reply; an error reply comes back as its exception, in its place (as a pipeline's
    ``execute(raise_on_error=False)``).

    This is a pipeline without redis-py's per-command bookkeeping: the commands are
    packed by hiredis, the replies parsed by it. For a batch's 2,000 ``DUMP``/``PTTL``,
    redis-py's pipeline cost six times the CPU (100,000 keys: 1.5-1.8 s against
    0.24-0.26 s), which a fork pays on top of the servers' work."""
    import hiredis
    import redis as redis_lib

    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        packed = b"".join([hiredis.pack_command(c) for c in commands])
        conn.send_packed_command([packed])  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except redis_lib.ResponseError as exc:
                replies.append(exc)  # its reply is read: the connection is in step
    except BaseException:
        # Replies may be left unread: the connection is never used again.
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    finally:
        pool.release(conn)
    return replies


def _fold(digests: Iterable[tuple[int, int, bool]]) -> Batch:
    xor = count = size = ttls = 0
    for digest, n, ttl in digests:
        xor ^= digest
        count += 1
        size += n
        ttls += ttl
    return Batch(xor, count, size, ttls)


class _NoDump(Exception):
    """Production's user may read values but not ``DUMP`` them."""


def _unreadable(exc: Exception) -> bool:
    """Whether RESTORE refused a payload of a newer format than the server's."""
    return "payload version" in str(exc)


def _delete(client: redis_lib.Redis, names: Sequence[bytes]) -> None:
    for start in range(0, len(names), BATCH):
        client.delete(*names[start : start + BATCH])


def _read_exact(
    client: redis_lib.Redis, keys: Sequence[bytes]
) -> list[tuple[bytes, bytes | None, int, Any]]:
    """Each key's type, ``DUMP``, ``PTTL`` and value (its type's read), the last three
    one after another on one connection: (type, payload, pttl, value); payload None for
    a key gone. Two round trips (the value's command depends on the type)."""
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.type(key)
        types = pipe.execute()
    with client.pipeline(transaction=False) as pipe:
        for key, kind in zip(keys, types, strict=True):
            pipe.dump(key)
            pipe.pttl(key)
            if kind in ELEMENT_TYPES:
                read_value(pipe, key, kind)
            else:
                pipe.exists(key)  # a module's type: not forked element by element
        replies = pipe.execute(raise_on_error=False)
    out = []
    for i, kind in enumerate(types):
        payload, pttl, value = replies[3 * i : 3 * i + 3]
        for reply in (payload, pttl, value):
            if isinstance(reply, Exception):
                raise reply
        gone = kind == b"none" or payload is None or pttl == -2
        if kind in ELEMENT_TYPES and kind != b"stream" and not value:
            gone = True  # emptied (so gone) between the reads
        if kind not in ELEMENT_TYPES:
            value = payload  # a module's type: its payload is its value
        out.append((kind, None if gone else payload, pttl, value))
    return out


def read_dump_digests(
    client: redis_lib.Redis, keys: Sequence[bytes], cut: int
) -> dict[bytes, tuple[int, int, bool]]:
    """Each existing key's digest (:func:`dump_digest`, of its name less its first
    ``cut`` bytes), size and whether it has a TTL, by that relative name: read commands
    only (``DUMP``, ``PTTL``; the elements of a set or hash in a hash table)."""
    out: dict[bytes, tuple[int, int, bool]] = {}
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        replies = send(client, [(cmd, key) for key in batch for cmd in _DUMP_PTTL])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        hashed = []
        for i, key in enumerate(batch):
            payload, pttl = replies[2 * i], replies[2 * i + 1]
            if payload is None or pttl == -2:
                continue
            if payload[0] in _HASHED:
                hashed.append(key)
                continue
            digest, n = dump_digest(key[cut:], payload, pttl)
            out[key[cut:]] = (digest, n, pttl > 0)
        again = _read_exact(client, hashed)
        for key, (_, payload, pttl, value) in zip(hashed, again, strict=True):
            if payload is not None:
                digest, n = dump_digest(key[cut:], payload, pttl, value)
                out[key[cut:]] = (digest, n, pttl > 0)
    return out


class _ElementCopy:
    """A copy made element by element: both sides digested that way."""

    by_elements = 0

    def __init__(self, run_prefix: bytes) -> None:
        self.run_prefix = run_prefix
        self.production: list[Batch] = []
        self.names: list[bytes] = []
        self.theirs: list[Batch] = []

    def verify(self, run: redis_lib.Redis) -> None:
        from omnilab.services.redis import scripts

        script = run.register_script(scripts.ELEMENTS_DIGEST)
        for start in range(0, len(self.names), BATCH):
            chunk = self.names[start : start + BATCH]
            xor, count, size, ttls = script(keys=chunk, args=[self.run_prefix, b""], client=run)
            self.theirs.append(Batch(int(xor, 16), int(count), int(size), int(ttls)))

    def checksums(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return combine(self.production, ELEMENTS_DIGEST), combine(self.theirs, ELEMENTS_DIGEST)

    def failure(self) -> str:
        ours, theirs = self.checksums()
        if ours == theirs:
            return ""
        return (
            f"{theirs['keys']:,} keys of {ours['keys']:,}; digests {theirs['xor128']} "
            f"and {ours['xor128']}"
        )


class _DumpCopy:
    """The copy by ``DUMP`` and ``RESTORE``: production is read a batch ahead (``DUMP``
    and ``PTTL`` of each key, read commands) while the run's Redis restores the batch
    before and digests it (``fast_digest.lua``, in the same round trip); this process
    digests the payloads production returned (:func:`dump_digest`). The two digests
    are of the same serialization, computed on either side from what each holds.

    Where they differ for a key (the run's server encodes it otherwise: another version
    or setting, a set shrunk below production's hash-table size), and for a set or hash
    that production holds in a hash table (whose payload order is the server's own), the
    key is read again element by element (:func:`_read_exact`), written that way, and
    compared with the digest that ignores the encoding (``elements_digest.lua``);
    production's digest of that key is then the one of that second read, which the run
    holds.
    """

    def __init__(
        self,
        forker: RedisForker,
        keys: list[bytes],
        prod_prefix: bytes,
        run_prefix: bytes,
        run: redis_lib.Redis,
    ) -> None:
        self.forker = forker
        self.keys = keys
        self.prod_prefix = prod_prefix
        self.cut = len(prod_prefix)
        self.run_prefix = run_prefix
        self.run_client = run
        #: Production's digest of each key copied, by relative name: (digest, size, ttl).
        self.ours: dict[bytes, tuple[int, int, bool]] = {}
        #: The run's digests: of whole batches that matched, and of single keys.
        self.theirs: list[Batch] = []
        #: Production's keys to read again element by element.
        self.elements: list[bytes] = []
        self.by_elements = 0
        self.differ: list[bytes] = []

    def _read(self, start: int) -> list[Any]:
        import redis as redis_lib

        batch = self.keys[start : start + BATCH]

        def read() -> list[Any]:
            replies = send(self.forker.prod, [(cmd, key) for key in batch for cmd in _DUMP_PTTL])
            for reply in replies:
                if isinstance(reply, redis_lib.exceptions.NoPermissionError):
                    raise _NoDump(str(reply))
                if isinstance(reply, Exception):
                    raise reply  # production refused a read: said as production's
            return replies

        return self.forker._reading(read)  # type: ignore[no-any-return]

    def run(self, progress: Progress) -> _DumpCopy:
        from omnilab.services.redis import scripts

        self.fast = self.run_client.register_script(scripts.FAST_DIGEST)
        self.restore_sha = self.run_client.script_load(scripts.RESTORE_DIGEST)
        self.by_element = self.run_client.register_script(scripts.ELEMENTS_DIGEST)
        keys = self.keys
        if not keys:
            return self
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(self._read, 0)
            for start in range(0, len(keys), BATCH):
                replies = pending.result()
                if start + BATCH < len(keys):
                    pending = reader.submit(self._read, start + BATCH)
                self._restore(keys[start : start + BATCH], replies)
                progress.advance(min(BATCH, len(keys) - start))
        return self

    def _restore(self, batch: list[bytes], replies: list[Any]) -> None:
        """RESTORE a batch in the run's Redis and digest it there, in one round trip."""
        relative: list[bytes] = []
        ours: list[tuple[int, int, bool]] = []
        args: list[Any] = [self.run_prefix]
        for i, key in enumerate(batch):
            payload, pttl = replies[2 * i], replies[2 * i + 1]
            if payload is None or pttl == -2:
                continue  # gone since the scan
            if payload[0] in _HASHED:
                self.elements.append(key)
                continue
            rel = key[self.cut :]
            args += (max(pttl, 0), payload)
            digest, n = dump_digest(rel, payload, pttl)
            relative.append(rel)
            ours.append((digest, n, pttl > 0))
        names = [self.run_prefix + rel for rel in relative]
        evalsha = (b"EVALSHA", self.restore_sha, len(names), *names, *args)
        (landed,) = send(self.run_client, [evalsha])
        if isinstance(landed, Exception):
            raise landed
        self.ours.update(zip(relative, ours, strict=True))
        theirs = _batch(landed)
        if theirs == _fold(ours):
            self.theirs.append(theirs)
            return
        # Which keys differ: each one's digest in the run's Redis.
        with self.run_client.pipeline(transaction=False) as pipe:
            for name in names:
                self.fast(keys=[name], args=[self.run_prefix, b""], client=pipe)
            found = pipe.execute()
        for rel, mine, reply in zip(relative, ours, found, strict=True):
            one = _batch(reply)
            if one == _fold([mine]):
                self.theirs.append(one)
            else:
                del self.ours[rel]
                self.elements.append(self.prod_prefix + rel)

    def verify(self, run: redis_lib.Redis) -> None:
        """Copy the keys that go the element way and compare each one's digest that
        ignores the encoding; the run's fast digest of each is taken for the record."""
        for start in range(0, len(self.elements), BATCH):
            chunk = self.elements[start : start + BATCH]
            read = self.forker._reading(lambda chunk=chunk: _read_exact(self.forker.prod, chunk))
            expected = []
            with run.pipeline(transaction=False) as pipe:
                for key, (kind, payload, pttl, value) in zip(chunk, read, strict=True):
                    rel = key[self.cut :]
                    name = self.run_prefix + rel
                    pipe.delete(name)
                    if payload is None:
                        continue  # gone since it was first read
                    if kind in ELEMENT_TYPES:
                        write_value(pipe, name, kind, value)
                        if pttl > 0:
                            pipe.pexpire(name, pttl)
                    else:
                        pipe.restore(name, max(pttl, 0), payload)
                    digest, n = dump_digest(rel, payload, pttl, value)
                    self.ours[rel] = (digest, n, pttl > 0)
                    expected.append((name, key_digest(kind, rel, value), pttl > 0))
                pipe.execute()
            with run.pipeline(transaction=False) as pipe:
                for name, _, _ in expected:
                    self.by_element(keys=[name], args=[self.run_prefix, b""], client=pipe)
                    self.fast(keys=[name], args=[self.run_prefix, b""], client=pipe)
                found = pipe.execute()
            for j, (name, (digest, n), ttl) in enumerate(expected):
                xor, count, size, ttls = found[2 * j]
                if (int(xor, 16), int(count), int(size), int(ttls)) != (digest, 1, n, int(ttl)):
                    self.differ.append(name)
                self.theirs.append(_batch(found[2 * j + 1]))
            self.by_elements += len(expected)

    def checksums(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Production's (what it returned) and the run's (what it holds), by ``DUMP``."""
        return combine([_fold(self.ours.values())]), combine(self.theirs)

    def failure(self) -> str:
        if self.differ:
            sample = ", ".join(k.decode(errors="replace") for k in self.differ[:3])
            return f"{len(self.differ):,} keys differ, e.g. {sample}"
        ours, theirs = self.checksums()
        if ours["keys"] != theirs["keys"]:
            return f"{theirs['keys']:,} keys of {ours['keys']:,}"
        return ""


def _batch(reply: Any) -> Batch:
    """A ``fast_digest.lua`` reply as a :class:`Batch`."""
    hexes, count, size, ttls = reply
    return Batch(xor_hexes(hexes), int(count), int(size), int(ttls))
