"""Promoting Redis keys: ``RedisKeys("emb:*")`` copies every key matching the pattern.

The item is the whole key space of the pattern: after a promotion, production's keys
matching the target pattern are exactly the run's (``--on-conflict replace`` moves the
production keys the run does not have out of the way, and the plan names them).

- Stage: keys are written under ``omnilab:staging:<promotion>:`` in production, a batch
  of 1,000 at a time: one script in the run's Redis ``DUMP``s the batch (and digests it
  meanwhile), one script in production ``RESTORE``s it under the staging names, and a
  third digests what landed; the next batch is read while one is written. ``DUMP``
  carries every type, and the TTL goes with it. Where production cannot read the run's
  ``DUMP`` format (:mod:`.compat`: a run on Valkey 9 into a Redis 7.0), the plan says so
  and the keys are copied element by element instead (every type but streams with
  consumer groups and modules' types; the plan refuses those, with the fix).
- Verify: each key's digest covers its name (relative to the item's prefix), whether it
  has a TTL, and its ``DUMP`` serialization without the trailing RDB version and CRC,
  which is the same on two servers holding the same value in the same encoding; sets and
  hashes held in a hash table, whose serialization follows the server's own iteration
  order, are digested element by element instead. Where the two servers' settings make
  them encode the same data differently, the fast digests differ and verification falls
  back to a digest that ignores the encoding (every element of every type), so only data
  that really differs fails a promotion. Counts, TTL counts and the XOR of every key's
  digest must match.
- Switch: one MULTI/EXEC, under WATCH, that RENAMEs the production keys it replaces to
  ``omnilab:replaced:<promotion>:`` and the staged keys to their names (RENAME keeps the
  TTL). Readers see all the old keys or all the new ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import redis as redis_lib

from omnilab.errors import UsageError
from omnilab.redact import redact_text, redact_url
from omnilab.services.promotable import (
    DIFF_EXAMPLES,
    ItemDiff,
    ItemPlan,
    ItemRecord,
    OnConflict,
    Progress,
    Promotable,
    Promoter,
    PromotionFailed,
    PromotionRefused,
    SinceFork,
)
from omnilab.services.redis import compat, scripts
from omnilab.services.redis.copy import (
    BATCH,
    DUMP_DIGEST,
    ELEMENT_TYPES,
    ELEMENTS_DIGEST,
    REPLACED,
    RESERVED,
    RESERVED_BYTES,
    SCAN_COUNT,
    STAGING,
    Batch,
    Method,
    chunks,
    combine,
    method_of,
    read_value,
    write_value,
    xor_hexes,
)
from omnilab.services.redis.fork import RedisForker

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.services.forking import Forker

#: The two routes a plan chooses between (``plan.details["copy_method"]``).
DUMP_RESTORE = "dump-restore"
ELEMENTS_COPY = "elements"


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


class RedisPromoter(Promoter):
    item: RedisKeys

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.settings.redis_url
        try:
            self.prod: redis_lib.Redis = redis_lib.Redis.from_url(url, socket_connect_timeout=10)
        except ValueError as exc:
            raise PromotionFailed(
                f"REDIS_URL {redact_url(url)} cannot be used: {redact_text(str(exc), url)}"
            ) from None
        self._src: redis_lib.Redis | None = None
        self._scripts: dict[tuple[int, str], Any] = {}
        #: The run's keys (from the plan), and production's keys the plan replaces.
        self._keys: list[bytes] = []
        self._existing: list[bytes] = []
        self._source_digests: dict[Method, list[Batch]] = {}

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
            found = {k for k in found if not k.startswith(RESERVED_BYTES)}
        return sorted(found)

    def _digest(
        self,
        client: redis_lib.Redis,
        keys: Sequence[bytes],
        strip: bytes,
        method: Method = DUMP_DIGEST,
    ) -> list[Batch]:
        """Per batch of ``BATCH`` keys (in order), the digest of the keys that exist."""
        fast = method == DUMP_DIGEST
        script = self._script(client, scripts.FAST_DIGEST if fast else scripts.ELEMENTS_DIGEST)
        out = []
        for batch in chunks(keys, BATCH):
            xor, count, size, ttls = script(keys=list(batch), args=[strip, b""], client=client)
            digest = xor_hexes(xor) if fast else int(xor, 16)
            out.append(Batch(digest, int(count), int(size), int(ttls)))
        return out

    def _names(self, prefix: bytes) -> list[bytes]:
        """The run's keys renamed to ``prefix`` + the part after the item's prefix."""
        cut = len(self.item.source_prefix.encode())
        return [prefix + k[cut:] for k in self._keys]

    def source_digest(self, method: Method = DUMP_DIGEST) -> list[Batch]:
        if method not in self._source_digests:
            self._source_digests[method] = self._digest(
                self.src, self._keys, self.item.source_prefix.encode(), method
            )
        return self._source_digests[method]

    def _pattern(self, prefix: str) -> str:
        return prefix + self.item.rest

    # -- plan -----------------------------------------------------------------------------

    def plan(self, on_conflict: OnConflict) -> ItemPlan:
        plan = self._plan_action(on_conflict)
        if plan.action in ("create", "replace", "version"):
            self._plan_route(plan)
        return plan

    def _plan_action(self, on_conflict: OnConflict) -> ItemPlan:
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

    # -- diff -------------------------------------------------------------------------------

    def diff(self, examples: int = DIFF_EXAMPLES, since: SinceFork | None = None) -> ItemDiff:
        """Keys added, changed and removed against production's keys of the pattern, by
        name (relative to the prefixes): each key's digest that ignores the encoding,
        computed by omnilab from read commands on both sides (no script runs in
        production). A key whose TTL came or went counts as changed."""
        import time

        from omnilab.services.redis.fork import read_digests

        began = time.monotonic()
        item = self.item
        ours_keys = self._scan(self.src, item.name)
        theirs_keys = self._scan(self.prod, item.target)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(
                read_digests, self.prod, theirs_keys, len(item.target_prefix.encode())
            )
            ours = read_digests(self.src, ours_keys, len(item.source_prefix.encode()))
            theirs = pending.result()
        found: dict[str, list[bytes]] = {
            "added": sorted(k for k in ours if k not in theirs),
            "changed": sorted(
                k for k, v in ours.items() if k in theirs and (v[0], v[2]) != theirs[k][::2]
            ),
            "removed": sorted(k for k in theirs if k not in ours),
        }
        prefix = item.target_prefix.encode()
        return ItemDiff(
            by="key name",
            unit=item.unit,
            added=len(found["added"]),
            changed=len(found["changed"]),
            removed=len(found["removed"]),
            examples={
                kind: [(prefix + k).decode(errors="backslashreplace") for k in keys[:examples]]
                for kind, keys in found.items()
            },
            production_has_it=bool(theirs_keys),
            seconds=round(time.monotonic() - began, 4),
        )

    def _plan_route(self, plan: ItemPlan) -> None:
        """How the keys will travel, decided before anything is copied: ``DUMP``/``RESTORE``
        where production reads the run's DUMP format, else element by element (every
        type but streams with consumer groups and modules' types); the plan refuses the
        item (``incompatible``, with the fix) where neither works."""
        if not self._keys:
            return
        source = compat.server_format(self.src, sample=self._keys[0])
        prod = compat.server_format(self.prod)
        plan.details["servers"] = {"run": source.describe(), "production": prod.describe()}
        readable = prod.reads(source.rdb)
        if readable:
            plan.details["copy_method"] = DUMP_RESTORE
            return
        why = (
            f"production's {prod.describe()} cannot read the DUMPs of the run's {source.describe()}"
            if readable is False
            else f"whether production's {prod.describe()} reads the DUMPs of the run's "
            f"{source.describe()} is unknown"
        )
        unsupported = self._not_copyable_by_elements()
        if not unsupported:
            plan.details["copy_method"] = ELEMENTS_COPY
            plan.notes.append(
                f"{why}: the keys are copied element by element instead (values, TTLs; "
                "slower than DUMP/RESTORE) and verified element by element"
            )
            return
        plan.action = "incompatible"
        sample = "; ".join(unsupported[:3])
        keys = f"{len(unsupported):,} key{'s' if len(unsupported) != 1 else ''}"
        plan.reason = (
            f"{why}, and {keys} cannot be copied element by element ({sample}); fix: run "
            f"the experiment again on a Redis whose DUMPs production reads: {compat.FIX}"
        )

    def _not_copyable_by_elements(self) -> list[str]:
        """The run's keys the element copy cannot carry whole, each with why: streams with
        consumer groups (their groups and pending entries), and modules' types."""
        types = self._types(self._keys)
        problems = []
        streams = [k for k, t in zip(self._keys, types, strict=True) if t == b"stream"]
        with self.src.pipeline(transaction=False) as pipe:
            for key in streams:
                pipe.xinfo_stream(key)
            infos = pipe.execute()
        for key, info in zip(streams, infos, strict=True):
            if info.get("groups"):
                problems.append(f"{key.decode(errors='replace')}: a stream with consumer groups")
        for key, kind in zip(self._keys, types, strict=True):
            if kind not in ELEMENT_TYPES:
                problems.append(f"{key.decode(errors='replace')}: type {kind.decode()}")
        return problems

    def _types(self, keys: Sequence[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for chunk in chunks(keys, BATCH):
            with self.src.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.type(key)
                out += pipe.execute()
        return out

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
        """Whether production's ``existing`` keys hold exactly the run's keys: by the
        fast digest, or where it differs (the servers may encode the same data
        differently) by the elements."""
        if existing != sorted(self._names(prefix.encode())):
            return False
        for method in (DUMP_DIGEST, ELEMENTS_DIGEST):
            theirs = self._digest(self.prod, existing, prefix.encode(), method)
            if combine(theirs, method) == combine(self.source_digest(method), method):
                return True
        return False

    # -- stage ----------------------------------------------------------------------------

    def stage(self, record: ItemRecord, progress: Progress) -> None:
        prefix = record.plan.details["prefix"].encode()
        staging = self.staging_prefix.encode() + prefix
        record.staging = {"prefix": self.staging_prefix}
        staged_names = self._names(staging)
        route = record.plan.details.get("copy_method", DUMP_RESTORE)
        record.staging["copy_method"] = route if self._keys else "none"
        method: Method = DUMP_DIGEST
        if route == ELEMENTS_COPY:
            # Production cannot read the run's DUMPs, so neither side's DUMP digest is
            # comparable: both sides are digested element by element.
            method = ELEMENTS_DIGEST
            self._copy_elements(staged_names, progress)
            source = self.source_digest(method)
            staged = self._digest(self.prod, staged_names, staging, method)
        else:
            source, staged = self._copy(staging, staged_names, progress)
        expired = self._expired_meanwhile(source, staged, staged_names)
        if expired:
            self._keys = [k for k in self._keys if k not in expired]
            self._source_digests.clear()
            staged_names = self._names(staging)
            source = self.source_digest(method)
            staged = self._digest(self.prod, staged_names, staging, method)
        if method == DUMP_DIGEST and combine(source) != combine(staged):
            # Either the data differs or the servers encode it differently (other
            # settings or versions): the digest that ignores the encoding tells which.
            method = ELEMENTS_DIGEST
            source = self.source_digest(method)
            staged = self._digest(self.prod, staged_names, staging, method)
        record.counts = {"source": len(self._keys), "target": combine(staged)["keys"]}
        if expired:
            record.counts["expired_meanwhile"] = len(expired)
        record.checksums = {"source": combine(source, method), "target": combine(staged, method)}
        if record.checksums["source"] != record.checksums["target"]:
            raise PromotionRefused(
                f"{self.item.label}: the staged copy differs from the run's keys "
                f"({self._differences(source, staged, method)})"
            )

    def _copy_elements(self, staged_names: list[bytes], progress: Progress) -> None:
        """The copy for a production that cannot read the run's DUMPs: each key read with
        its type's commands on the run's Redis, written with their counterparts under its
        staged name in production, and given the same TTL; a batch at a time.

        The run's stack is stopped but for promotion, so its keys do not change between
        the reads; a key whose TTL ran out meanwhile is left out (and counted as such).
        """
        keys = self._keys
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            names = staged_names[start : start + BATCH]
            types = self._types(batch)
            with self.src.pipeline(transaction=False) as pipe:
                for key, kind in zip(batch, types, strict=True):
                    pipe.pttl(key)
                    read_value(pipe, key, kind)
                replies = pipe.execute(raise_on_error=False)
            try:
                with self.prod.pipeline(transaction=False) as pipe:
                    for i, (name, kind) in enumerate(zip(names, types, strict=True)):
                        pttl, value = replies[2 * i], replies[2 * i + 1]
                        if isinstance(value, Exception) or not write_value(pipe, name, kind, value):
                            continue  # gone since the plan (its TTL ran out)
                        if isinstance(pttl, int) and pttl > 0:
                            pipe.pexpire(name, pttl)
                    pipe.execute()
            except redis_lib.ResponseError as exc:
                raise self._copy_error(exc) from None
            progress.advance(len(batch))

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

    def _differences(self, source: list[Batch], staged: list[Batch], method: Method) -> str:
        """Which keys differ, for the error message: compare batch by batch, then per key."""
        bad = [i for i, (a, b) in enumerate(zip(source, staged, strict=True)) if a != b]
        keys = [k for i in bad[:3] for k in self._keys[i * BATCH : (i + 1) * BATCH]]
        cut = len(self.item.source_prefix.encode())
        staging = self.staging_prefix.encode() + self._target_prefix_bytes()
        differ = [
            k.decode(errors="replace")
            for k in keys[: 10 * BATCH]
            if self._digest(self.src, [k], k[:cut], method)
            != self._digest(self.prod, [staging + k[cut:]], staging, method)
        ]
        sample = ", ".join(differ[:3])
        return f"{len(bad)} batches of {BATCH} keys differ" + (f", e.g. {sample}" if sample else "")

    def _target_prefix_bytes(self) -> bytes:
        return self.item.target_prefix.encode()

    def _copy(
        self, staging: bytes, staged_names: list[bytes], progress: Progress
    ) -> tuple[list[Batch], list[Batch]]:
        """Copy every key to its staging name in production, a batch at a time; returns
        the fast digests of the source's batches and of the staged ones.

        The run's Redis serializes batch *i + 1* while production restores and digests
        batch *i*; payloads pass through this process once, as bytes, and both digests
        are computed by the servers from the data they hold.
        """
        keys = self._keys
        if not keys:
            return [], []
        dump = self._script(self.src, scripts.DUMP)
        restore = self._script(self.prod, scripts.RESTORE)
        digest = self._script(self.prod, scripts.FAST_DIGEST)
        strip = self.item.source_prefix.encode()

        def read(start: int) -> list[Any]:
            return dump(keys=keys[start : start + BATCH], args=[strip], client=self.src)  # type: ignore[no-any-return]

        source: list[Batch] = []
        staged: list[Batch] = []
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(read, 0)
            for start in range(0, len(keys), BATCH):
                hexes, count, size, ttls, *pairs = pending.result()
                if start + BATCH < len(keys):
                    pending = reader.submit(read, start + BATCH)
                source.append(Batch(xor_hexes(hexes), int(count), int(size), int(ttls)))
                batch_names = staged_names[start : start + BATCH]
                names: list[bytes] = []
                args: list[Any] = []
                for name, payload, ttl in zip(batch_names, pairs[::2], pairs[1::2], strict=True):
                    if payload is not None:  # None: its TTL ran out since the plan
                        names.append(name)
                        args += (ttl, payload)
                try:
                    if names:
                        restore(keys=names, args=args, client=self.prod)
                    landed = digest(keys=batch_names, args=[staging, b""], client=self.prod)
                except redis_lib.ResponseError as exc:
                    raise self._copy_error(exc) from None
                hexes, count, size, ttls = landed
                staged.append(Batch(xor_hexes(hexes), int(count), int(size), int(ttls)))
                progress.advance(len(batch_names))
        self._source_digests[DUMP_DIGEST] = source
        return source, staged

    def _copy_error(self, exc: redis_lib.ResponseError) -> PromotionFailed:
        # redis-py drops the error code from the message; the script's line is noise.
        text = re.sub(r"\s*script: .*$", "", str(exc).strip())
        if isinstance(exc, redis_lib.exceptions.OutOfMemoryError):
            return PromotionFailed(
                f"{self.item.label}: production Redis is full (OOM: {text}); nothing was "
                "changed, free memory or raise maxmemory and promote again"
            )
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
        replacing = record.plan.action == "replace"
        if self.source is None:
            # Finishing an interrupted promotion (omnilab.promote.recovery): the run's
            # stack is closed; the staged keys say what to switch, and what production
            # holds under the target now is what a replace replaces (kept for rollback).
            staged = self._scan(self.prod, self.staging_prefix + "*", own=True)
            names = [prefix + k[len(staging) :] for k in staged if k.startswith(staging)]
            replaced = self._scan(self.prod, record.plan.target) if replacing else []
        else:
            names = self._names(prefix)
            replaced = self._existing if replacing else []
        backup = self.replaced_prefix.encode()
        keys = [*replaced, *(backup + k for k in replaced)]
        keys += [staging + k[len(prefix) :] for k in names]
        keys += names
        script = self._script(self.prod, scripts.SWITCH)
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

    def intended_switch(self, record: ItemRecord) -> dict[str, Any]:
        replacing = record.plan.action == "replace"
        return {"replaced_prefix": self.replaced_prefix if replacing else None}

    def unswitch(self, record: ItemRecord) -> None:
        current = self._scan(self.prod, record.plan.target)
        backups = self._scan(self.prod, self.replaced_prefix + "*", own=True)
        cut = len(self.replaced_prefix.encode())
        rename = self._script(self.prod, scripts.RENAME)
        with self.prod.pipeline(transaction=True) as pipe:
            for chunk in chunks(current, 10_000):
                pipe.unlink(*chunk)
            for chunk in chunks(backups, 5_000):
                rename(keys=[k for b in chunk for k in (b, b[cut:])], client=pipe)
            pipe.execute()

    def is_switched(self, record: ItemRecord) -> bool:
        return not self._scan(self.prod, self.staging_prefix + "*", own=True)

    def target_checksum(self, record: ItemRecord) -> dict[str, Any] | None:
        prefix = record.plan.details.get("prefix", self.item.target_prefix)
        keys = self._scan(self.prod, record.plan.target)
        if not keys:
            return None
        method = method_of(record.checksums.get("target"))
        return combine(self._digest(self.prod, keys, prefix.encode(), method), method)

    def reserve(self, record: ItemRecord) -> None:
        record.staging = {"prefix": self.staging_prefix}

    def discard_staging(self, record: ItemRecord) -> list[str]:
        removed = []
        clients = [("", self.prod)] + ([(" of the run", self.src)] if self.source else [])
        for where, client in clients:
            keys = self._scan(client, self.staging_prefix + "*", own=True)
            self._drop(client, keys)
            if keys:
                removed.append(f"{len(keys):,} redis keys{where} {self.staging_prefix}*")
        return removed

    def drop_replaced(self, record: ItemRecord) -> None:
        self._drop(self.prod, self._scan(self.prod, self.replaced_prefix + "*", own=True))

    @staticmethod
    def _drop(client: redis_lib.Redis, keys: Iterable[bytes]) -> None:
        for chunk in chunks(list(keys), 1000):
            client.unlink(*chunk)


class RedisKeys(Promotable):
    """Keys matching a glob pattern, with their values (every type) and TTLs.

    ``target_prefix`` renames on the way: ``RedisKeys("emb:*", target_prefix="prod:emb:")``
    promotes ``emb:1`` as ``prod:emb:1``. Keys under ``omnilab:staging:``,
    ``omnilab:replaced:``, ``rq:``, ``omnilab:log:`` and ``omnilab:task:`` (the run queue's)
    are never promoted, forked nor touched.
    """

    service: ClassVar[str] = "redis"
    kind: ClassVar[str] = "redis_keys"
    promoter_class: ClassVar[type[Promoter]] = RedisPromoter
    forker_class: ClassVar[type[Forker] | None] = RedisForker
    unit: ClassVar[str] = "keys"
    noun: ClassVar[str] = "redis keys"

    def __init__(
        self,
        name: str,
        *,
        target_prefix: str | None = None,
        limit: int | None = None,
        sample: float | None = None,
        seed: int = 0,
    ) -> None:
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
        super().__init__(name, target=target, limit=limit, sample=sample, seed=seed)
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
        return redact_url(settings.redis_url)
