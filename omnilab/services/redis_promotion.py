"""Promoting Redis keys: ``RedisKeys("emb:*")`` copies every key matching the pattern.

The item is the whole key space of the pattern: after a promotion, production's keys
matching the target pattern are exactly the run's (``--on-conflict replace`` moves the
production keys the run does not have out of the way, and the plan names them).

- Stage: keys are written under ``omnilab:staging:<promotion>:`` in production. When the
  run's Redis can reach production, the servers copy the data themselves (``COPY`` to
  the staging name in the run's Redis, then ``MIGRATE``: no value passes through Python);
  otherwise pipelined ``DUMP``/``RESTORE``. Both carry every type and its TTL.
- Verify: a Lua script computes, on each server, a digest of every key's type, name and
  value that does not depend on the server's internal encoding or iteration order; the
  source's and the staged copy's must match key by key, and as many keys must have a TTL.
- Switch: one MULTI/EXEC, under WATCH, that RENAMEs the production keys it replaces to
  ``omnilab:replaced:<promotion>:`` and the staged keys to their names (RENAME keeps the
  TTL). Readers see all the old keys or all the new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import redis as redis_lib

from omnilab.errors import UsageError
from omnilab.services.promotion import (
    ItemPlan,
    ItemRecord,
    OnConflict,
    Progress,
    Promotable,
    Promoter,
    PromotionFailed,
    masked_url,
)

if TYPE_CHECKING:
    from omnilab.config import Settings

#: Keys under these prefixes belong to the machinery, not to anyone's data: omnilab's staging
#: copies and replaced keys, and rq's queue (the run queue shares ``REDIS_URL`` with
#: production). They are never promoted, never counted as production data of a pattern, and
#: never overwritten. Other ``omnilab:`` keys, such as the completion cache, are data.
STAGING = "omnilab:staging:"
REPLACED = "omnilab:replaced:"
RESERVED = (STAGING, REPLACED, "rq:")
_RESERVED_BYTES = tuple(p.encode() for p in RESERVED)
BATCH = 1000
SCAN_COUNT = 1000

# For a batch of keys: the XOR of each key's digest (of its type, its name relative to the
# item's prefix, and its value), how many exist, their size and how many have a TTL.
# Sets and hashes are combined by XOR of each element's SHA-1 (elements are unique), so
# neither the encoding nor the iteration order, which differ between two servers holding
# the same data, changes the digest; table.sort is avoided because Lua compares strings
# with strcoll, which depends on the server's locale. Keys are unique, so XOR is sound.
_DIGEST_LUA = r"""
local strip, add = ARGV[1], ARGV[2]
local bxor, tonumber, sub, sha1, call = bit.bxor, tonumber, string.sub, redis.sha1hex, redis.call
local a1, a2, a3, a4, count, size, ttls = 0, 0, 0, 0, 0, 0, 0
local function unordered(items, paired)
  local x1, x2, n = 0, 0, 0
  local step = paired and 2 or 1
  for j = 1, #items, step do
    local e = items[j]
    if paired then e = #e .. ':' .. e .. items[j + 1] end
    local h = sha1(e)
    x1 = bxor(x1, tonumber(sub(h, 1, 8), 16))
    x2 = bxor(x2, tonumber(sub(h, 9, 16), 16))
    n = n + #e
  end
  return bit.tohex(x1) .. bit.tohex(x2), n
end
local function ordered(items)
  local n = 0
  for j = 1, #items do
    n = n + #items[j]
    items[j] = #items[j] .. ':' .. items[j]
  end
  return table.concat(items), n
end
for _, key in ipairs(KEYS) do
  local kind = call('TYPE', key)['ok']
  if kind ~= 'none' then
    local body, n
    if kind == 'string' then
      body = call('GET', key)
      n = #body
    elseif kind == 'list' then
      body, n = ordered(call('LRANGE', key, 0, -1))
    elseif kind == 'zset' then
      body, n = ordered(call('ZRANGE', key, 0, -1, 'WITHSCORES'))
    elseif kind == 'set' then
      body, n = unordered(call('SMEMBERS', key), false)
    elseif kind == 'hash' then
      body, n = unordered(call('HGETALL', key), true)
    elseif kind == 'stream' then
      local parts = {}
      n = 0
      for _, entry in ipairs(call('XRANGE', key, '-', '+')) do
        local fields, m = ordered(entry[2])
        parts[#parts + 1] = entry[1] .. '#' .. fields
        n = n + m
      end
      body = table.concat(parts, '\n')
    else
      body = call('DUMP', key)
      n = #body
    end
    local h = sha1(kind .. '\n' .. add .. sub(key, #strip + 1) .. '\n' .. body)
    a1 = bxor(a1, tonumber(sub(h, 1, 8), 16))
    a2 = bxor(a2, tonumber(sub(h, 9, 16), 16))
    a3 = bxor(a3, tonumber(sub(h, 17, 24), 16))
    a4 = bxor(a4, tonumber(sub(h, 25, 32), 16))
    count = count + 1
    size = size + n
    if call('PTTL', key) > 0 then ttls = ttls + 1 end
  end
end
return {bit.tohex(a1) .. bit.tohex(a2) .. bit.tohex(a3) .. bit.tohex(a4), count, size, ttls}
"""

# The switch, in one script inside MULTI/EXEC: it RENAMEs the replaced keys to the kept
# prefix, then the staged keys to their names (RENAMENX where the plan creates the name),
# and if production is not as planned (a key to replace has vanished, a key has appeared
# under a name being created) it renames everything back and says which key. A script
# runs atomically: no reader sees a state in between, no writer slips in. KEYS: R replaced
# keys, their R kept names, N staged keys, their N names; ARGV[1] = R. A staged key whose
# TTL ran out meanwhile is counted.
_SWITCH_LUA = r"""
local r = tonumber(ARGV[1])
local n = (#KEYS - 2 * r) / 2
local done = {}
local function undo()
  for i = #done, 1, -1 do redis.call('RENAME', done[i][2], done[i][1]) end
end
local replaced = {}
for i = 1, r do
  local ok = redis.pcall('RENAME', KEYS[i], KEYS[r + i])
  if type(ok) == 'table' and ok.err then
    undo()
    return {'vanished', KEYS[i]}
  end
  done[#done + 1] = {KEYS[i], KEYS[r + i]}
  replaced[KEYS[i]] = true
end
local missing = 0
for i = 1, n do
  local staged, name = KEYS[2 * r + i], KEYS[2 * r + n + i]
  local ok
  if replaced[name] then
    ok = redis.pcall('RENAME', staged, name)
  else
    ok = redis.pcall('RENAMENX', staged, name)
  end
  if type(ok) == 'table' and ok.err then
    missing = missing + 1
  elseif ok == 0 then
    undo()
    return {'appeared', name}
  else
    done[#done + 1] = {staged, name}
  end
end
return {'ok', missing}
"""

# Renames of (from, to) pairs, for switching back; a missing source is counted.
_RENAME_LUA = r"""
local missing = 0
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + 1])
  else
    missing = missing + 1
  end
end
return missing
"""

# In the run's own Redis: copy each key to its staging name, ready for MIGRATE.
_STAGE_COPY_LUA = r"""
local strip, add, n = ARGV[1], ARGV[2], 0
for _, key in ipairs(KEYS) do
  n = n + redis.call('COPY', key, add .. string.sub(key, #strip + 1), 'REPLACE')
end
return n
"""


def literal_prefix(pattern: str) -> str:
    """The part of a glob pattern before its first special character."""
    for i, ch in enumerate(pattern):
        if ch in "*?[\\":
            return pattern[:i]
    return pattern


def _version_prefix(prefix: str, n: int) -> str:
    """``emb:`` -> ``emb_v2:``: the version goes before a trailing separator."""
    if prefix and prefix[-1] in ":._-/|":
        return f"{prefix[:-1]}_v{n}{prefix[-1]}"
    return f"{prefix}_v{n}"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class RedisKeys(Promotable):
    """Keys matching a glob pattern, with their values (every type) and TTLs.

    ``target_prefix`` renames on the way: ``RedisKeys("emb:*", target_prefix="prod:emb:")``
    promotes ``emb:1`` as ``prod:emb:1``. Keys under ``omnilab:staging:``,
    ``omnilab:replaced:`` and ``rq:`` (the run queue) are never promoted nor touched.
    """

    service: ClassVar[str] = "redis"
    kind: ClassVar[str] = "redis_keys"
    unit: ClassVar[str] = "keys"
    noun: ClassVar[str] = "redis keys"

    def __init__(self, name: str, *, target_prefix: str | None = None) -> None:
        if isinstance(name, str) and name.startswith(RESERVED):
            raise UsageError(
                f"RedisKeys({name!r}): keys under {', '.join(map(repr, RESERVED))} are "
                "omnilab's and rq's own"
            )
        prefix = literal_prefix(name) if isinstance(name, str) else ""
        if target_prefix is not None and (
            not isinstance(target_prefix, str) or target_prefix.startswith(RESERVED)
        ):
            raise UsageError(f"RedisKeys: target_prefix {target_prefix!r} is not usable")
        target = None if target_prefix is None else target_prefix + name[len(prefix) :]
        super().__init__(name, target=target)
        self.source_prefix = prefix
        self.target_prefix = prefix if target_prefix is None else target_prefix

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"name": self.name}
        if self.target_prefix != self.source_prefix:
            options["target_prefix"] = self.target_prefix
        return options

    @property
    def rest(self) -> str:
        """The pattern after its literal prefix (``*`` for ``emb:*``)."""
        return self.name[len(self.source_prefix) :]

    def production_url(self, settings: Settings) -> str:
        return masked_url(settings.redis_url)


class Batch(NamedTuple):
    """The digest of one batch of keys (see ``_DIGEST_LUA``)."""

    xor: int
    count: int
    size: int
    ttls: int


def combine(batches: Iterable[Batch]) -> dict[str, Any]:
    """A key set's checksum, as recorded: counts and the XOR of every key's digest."""
    xor = count = size = ttls = 0
    for b in batches:
        xor ^= b.xor
        count += b.count
        size += b.size
        ttls += b.ttls
    return {"keys": count, "with_ttl": ttls, "bytes": size, "xor128": f"{xor:032x}"}


class RedisPromoter(Promoter):
    item: RedisKeys

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prod: redis_lib.Redis = redis_lib.Redis.from_url(
            self.settings.redis_url, socket_connect_timeout=10
        )
        self._src: redis_lib.Redis | None = None
        self._scripts: dict[tuple[int, str], Any] = {}
        #: The run's keys (from the plan), and production's keys the plan replaces.
        self._keys: list[bytes] = []
        self._existing: list[bytes] = []
        self._source_digest: list[Batch] | None = None

    # -- connections and helpers ----------------------------------------------------------

    @property
    def src(self) -> redis_lib.Redis:
        if self._src is None:
            endpoint = self.need_source()
            self._src = redis_lib.Redis(
                host=endpoint.host,
                port=endpoint.port,
                password=endpoint.credentials.password,
                socket_connect_timeout=10,
            )
        return self._src

    def close(self) -> None:
        self.prod.close()
        if self._src is not None:
            self._src.close()

    @property
    def staging_prefix(self) -> str:
        return f"{STAGING}{self.tag}:"

    @property
    def replaced_prefix(self) -> str:
        return f"{REPLACED}{self.tag}:"

    def _script(self, client: redis_lib.Redis, text: str) -> Any:
        key = (id(client), text)
        if key not in self._scripts:
            self._scripts[key] = client.register_script(text)
        return self._scripts[key]

    def _scan(self, client: redis_lib.Redis, pattern: str, *, own: bool = False) -> list[bytes]:
        """Every key matching ``pattern``, once; omnilab's own keys left out unless ``own``."""
        found = set(client.scan_iter(match=pattern, count=SCAN_COUNT))
        if not own:
            found = {k for k in found if not k.startswith(_RESERVED_BYTES)}
        return sorted(found)

    def _digest(self, client: redis_lib.Redis, keys: Sequence[bytes], strip: bytes) -> list[Batch]:
        """Per batch of ``BATCH`` keys (in order), the digest of the keys that exist."""
        script = self._script(client, _DIGEST_LUA)
        out = []
        for batch in _chunks(keys, BATCH):
            xor, count, size, ttls = script(keys=list(batch), args=[strip, b""], client=client)
            out.append(Batch(int(xor, 16), int(count), int(size), int(ttls)))
        return out

    def _names(self, prefix: bytes) -> list[bytes]:
        """The run's keys renamed to ``prefix`` + the part after the item's prefix."""
        cut = len(self.item.source_prefix.encode())
        return [prefix + k[cut:] for k in self._keys]

    def source_digest(self) -> list[Batch]:
        if self._source_digest is None:
            self._source_digest = self._digest(
                self.src, self._keys, self.item.source_prefix.encode()
            )
        return self._source_digest

    def _pattern(self, prefix: str) -> str:
        return prefix + self.item.rest

    # -- plan -----------------------------------------------------------------------------

    def plan(self, on_conflict: OnConflict) -> ItemPlan:
        item = self.item
        self._keys = self._scan(self.src, item.name)
        plan = self.new_plan(len(self._keys), details={"prefix": item.target_prefix})
        existing = self._scan(self.prod, item.target)
        self._existing = existing
        if not existing:
            plan.action = "create" if self._keys else "nothing"
            plan.reason = "no production key matches" if self._keys else "no key to copy"
            return plan
        plan.target_count = len(existing)
        if self._same(existing, item.target_prefix):
            plan.action, plan.reason = "nothing", "production already holds these keys"
            return plan
        if on_conflict == "fail":
            plan.action = "conflict"
            plan.reason = (
                f"production has {len(existing):,} other keys matching {item.target}; "
                "use --on-conflict replace or version"
            )
            return plan
        if on_conflict == "replace":
            ours = set(self._names(item.target_prefix.encode()))
            theirs = set(existing)
            plan.action = "replace"
            plan.details.update(
                overwritten=len(ours & theirs),
                deleted=len(theirs - ours),
                created=len(ours - theirs),
            )
            plan.reason = (
                f"replaces the {len(theirs):,} production keys matching {item.target} "
                f"({len(ours & theirs):,} overwritten, {len(theirs - ours):,} removed), "
                "keeping them for rollback"
            )
            return plan
        return self._plan_version(plan)

    def _plan_version(self, plan: ItemPlan) -> ItemPlan:
        prefix = self.item.target_prefix
        if not prefix:
            plan.action = "conflict"
            plan.reason = f"{self.item.name} has no literal prefix to put a version in"
            return plan
        for n in range(2, 10_000):
            candidate = _version_prefix(prefix, n)
            existing = self._scan(self.prod, self._pattern(candidate))
            plan.target, plan.details["prefix"] = self._pattern(candidate), candidate
            if not existing:
                plan.action = "version"
                plan.reason = f"production's {self.item.target} is left as it is"
                self._existing = []
                return plan
            if self._same(existing, candidate):
                plan.action = "nothing"
                plan.reason = f"production already holds these keys as {plan.target}"
                return plan
        raise PromotionFailed(f"{self.item.label}: no free version prefix")

    def _same(self, existing: list[bytes], prefix: str) -> bool:
        """Whether production's ``existing`` keys hold exactly the run's keys."""
        if existing != sorted(self._names(prefix.encode())):
            return False
        theirs = combine(self._digest(self.prod, existing, prefix.encode()))
        return theirs == combine(self.source_digest())

    # -- stage ----------------------------------------------------------------------------

    def stage(self, record: ItemRecord, progress: Progress) -> None:
        prefix = record.plan.details["prefix"].encode()
        staging = self.staging_prefix.encode() + prefix
        record.staging = {"prefix": self.staging_prefix}
        staged_names = self._names(staging)
        # Three things overlap: the copy; the run's Redis digesting its keys; production
        # digesting each staged batch as soon as it has landed. Verification then costs
        # little more than the copy itself.
        with ThreadPoolExecutor(max_workers=1) as src_pool, ThreadPoolExecutor(1) as dst_pool:
            source_future = src_pool.submit(self.source_digest)
            staged_futures = []

            def landed(start: int, end: int) -> None:
                names = staged_names[start:end]
                staged_futures.append(dst_pool.submit(self._digest, self.prod, names, staging))

            record.staging["copy_method"] = self._copy(staging, progress, landed)
            source = source_future.result()
            staged = [b for f in staged_futures for b in f.result()]
        expired = self._expired_meanwhile(source, staged, staged_names)
        if expired:
            self._keys = [k for k in self._keys if k not in expired]
            self._source_digest = None
            source = self.source_digest()
            staged = self._digest(self.prod, self._names(staging), staging)
        record.counts = {"source": len(self._keys), "target": combine(staged)["keys"]}
        if expired:
            record.counts["expired_meanwhile"] = len(expired)
        record.checksums = {"source": combine(source), "target": combine(staged)}
        if record.checksums["source"] != record.checksums["target"]:
            raise PromotionFailed(
                f"{self.item.label}: the staged copy differs from the run's keys "
                f"({self._differences(source, staged)})"
            )

    def _expired_meanwhile(
        self, source: list[Batch], staged: list[Batch], staged_names: list[bytes]
    ) -> set[bytes]:
        """Run keys missing from staging because their TTL ran out during the copy."""
        if combine(source)["keys"] == combine(staged)["keys"] == len(self._keys):
            return set()
        with self.prod.pipeline(transaction=False) as pipe:
            for name in staged_names:
                pipe.exists(name)
            present = pipe.execute()
        missing = [k for k, p in zip(self._keys, present, strict=True) if not p]
        if not missing:
            return set()
        with self.src.pipeline(transaction=False) as pipe:
            for key in missing:
                pipe.exists(key)
            alive = pipe.execute()
        return {k for k, a in zip(missing, alive, strict=True) if not a}

    def _differences(self, source: list[Batch], staged: list[Batch]) -> str:
        """Which keys differ, for the error message: compare batch by batch, then per key."""
        bad = [i for i, (a, b) in enumerate(zip(source, staged, strict=True)) if a != b]
        keys = [k for i in bad[:3] for k in self._keys[i * BATCH : (i + 1) * BATCH]]
        cut = len(self.item.source_prefix.encode())
        staging = self.staging_prefix.encode() + self._target_prefix_bytes()
        differ = [
            k.decode(errors="replace")
            for k in keys[: 10 * BATCH]
            if self._digest(self.src, [k], k[:cut])
            != self._digest(self.prod, [staging + k[cut:]], staging)
        ]
        sample = ", ".join(differ[:3])
        return f"{len(bad)} batches of {BATCH} keys differ" + (f", e.g. {sample}" if sample else "")

    def _target_prefix_bytes(self) -> bytes:
        return self.item.target_prefix.encode()

    def _copy(self, staging: bytes, progress: Progress, landed: Callable[[int, int], None]) -> str:
        """Copy every key to its staging name in production; returns the method used.

        ``landed(start, end)`` is called as each batch of keys is in production.
        """
        if not self._keys:
            return "none"
        target = self._migrate_target()
        for i, batch in enumerate(_chunks(self._keys, BATCH)):
            if target is not None:
                try:
                    self._migrate(batch, staging, target)
                except redis_lib.ResponseError as exc:
                    text = str(exc)
                    if i or not text.startswith("IOERR"):
                        raise self._copy_error(text) from None
                    # The run's Redis cannot reach production (another network, TLS, a
                    # Unix socket): copy through this process instead.
                    self.reporter.note(
                        f"    {self.item.label}: the run's Redis cannot reach production "
                        f"({text.splitlines()[0][:120]}); copying through omnilab"
                    )
                    self._drop(self.src, self._scan(self.src, self.staging_prefix + "*", own=True))
                    target = None
            if target is None:
                self._dump_restore(batch, staging)
            landed(i * BATCH, i * BATCH + len(batch))
            progress.advance(len(batch))
        return "migrate" if target is not None else "dump-restore"

    def _migrate_target(self) -> dict[str, Any] | None:
        from redis.connection import Connection

        pool = self.prod.connection_pool
        if pool.connection_class is not Connection:  # TLS or a Unix socket
            return None
        kw = pool.connection_kwargs
        return {
            "host": kw.get("host", "localhost"),
            "port": kw.get("port", 6379),
            "db": kw.get("db", 0) or 0,
            "username": kw.get("username"),
            "password": kw.get("password"),
        }

    def _migrate(self, batch: Sequence[bytes], staging: bytes, target: dict[str, Any]) -> None:
        copy = self._script(self.src, _STAGE_COPY_LUA)
        source_prefix = self.item.source_prefix.encode()
        copy(keys=list(batch), args=[source_prefix, staging], client=self.src)
        names = [staging + k[len(source_prefix) :] for k in batch]
        auth: list[Any] = []
        if target["password"] and target["username"]:
            auth = ["AUTH2", target["username"], target["password"]]
        elif target["password"]:
            auth = ["AUTH", target["password"]]
        # Without COPY, MIGRATE moves the staging copies: the run's Redis ends as it was.
        self.src.execute_command(
            "MIGRATE", target["host"], target["port"], "", target["db"], 60_000, *auth,
            "KEYS", *names,
        )  # fmt: skip

    def _dump_restore(self, batch: Sequence[bytes], staging: bytes) -> None:
        with self.src.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.dump(key)
                pipe.pttl(key)
            dumped = pipe.execute()
        cut = len(self.item.source_prefix.encode())
        with self.prod.pipeline(transaction=False) as pipe:
            for i, key in enumerate(batch):
                payload, ttl = dumped[2 * i], dumped[2 * i + 1]
                if payload is None:
                    continue  # its TTL ran out since the plan
                pipe.restore(staging + key[cut:], max(ttl, 0), payload)
            try:
                pipe.execute()
            except redis_lib.ResponseError as exc:
                raise self._copy_error(str(exc)) from None

    def _copy_error(self, text: str) -> PromotionFailed:
        text = text.removeprefix("ERR Target instance replied with error: ")
        if "payload version" in text:
            return PromotionFailed(
                f"{self.item.label}: production Redis cannot read the run's DUMP format "
                f"(a newer Redis or Valkey wrote it): {text}"
            )
        return PromotionFailed(f"{self.item.label}: production refused the copy: {text}")

    # -- switch ---------------------------------------------------------------------------

    def switch(self, record: ItemRecord) -> None:
        prefix = record.plan.details["prefix"].encode()
        staging = self.staging_prefix.encode() + prefix
        names = self._names(prefix)
        replaced = self._existing if record.plan.action == "replace" else []
        backup = self.replaced_prefix.encode()
        keys = [*replaced, *(backup + k for k in replaced)]
        keys += [staging + k[len(prefix) :] for k in names]
        keys += names
        script = self._script(self.prod, _SWITCH_LUA)
        with self.prod.pipeline(transaction=True) as pipe:
            script(keys=keys, args=[len(replaced)], client=pipe)
            [(status, detail)] = pipe.execute()
        if status != b"ok":
            raise PromotionFailed(
                f"{self.item.label}: production changed while promoting (key "
                f"{detail.decode(errors='replace')!r} {status.decode()}); nothing was changed, "
                "run the promotion again"
            )
        record.switch.update(
            replaced_prefix=self.replaced_prefix if replaced else None,
            replaced_keys=len(replaced),
            created_keys=len(set(names) - set(replaced)),
            expired_during_switch=int(detail),
        )

    def unswitch(self, record: ItemRecord) -> None:
        current = self._scan(self.prod, record.plan.target)
        backups = self._scan(self.prod, self.replaced_prefix + "*", own=True)
        cut = len(self.replaced_prefix.encode())
        rename = self._script(self.prod, _RENAME_LUA)
        with self.prod.pipeline(transaction=True) as pipe:
            for chunk in _chunks(current, 10_000):
                pipe.unlink(*chunk)
            for chunk in _chunks(backups, 5_000):
                rename(keys=[k for b in chunk for k in (b, b[cut:])], client=pipe)
            pipe.execute()

    def is_switched(self, record: ItemRecord) -> bool:
        return not self._scan(self.prod, self.staging_prefix + "*", own=True)

    def target_checksum(self, record: ItemRecord) -> dict[str, Any] | None:
        prefix = record.plan.details.get("prefix", self.item.target_prefix)
        keys = self._scan(self.prod, record.plan.target)
        if not keys:
            return None
        return combine(self._digest(self.prod, keys, prefix.encode()))

    def discard_staging(self, record: ItemRecord) -> None:
        self._drop(self.prod, self._scan(self.prod, self.staging_prefix + "*", own=True))
        if self.source is not None:
            self._drop(self.src, self._scan(self.src, self.staging_prefix + "*", own=True))

    def drop_replaced(self, record: ItemRecord) -> None:
        self._drop(self.prod, self._scan(self.prod, self.replaced_prefix + "*", own=True))

    @staticmethod
    def _drop(client: redis_lib.Redis, keys: Iterable[bytes]) -> None:
        for chunk in _chunks(list(keys), 1000):
            client.unlink(*chunk)


RedisKeys.promoter_class = RedisPromoter
