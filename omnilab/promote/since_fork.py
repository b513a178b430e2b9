"""Did production change since the run was forked from it?

A run forked from production (``Experiment.seeds``) recorded, per seed, the checksum of
what production returned (``runs.seeds``). Promoting an item the run was forked from is
then like pushing to a branch: if production still holds what the run started from, the
run's item simply follows it (a fast-forward: production's item is replaced, and kept
for rollback); if production changed meanwhile, someone else's work would be lost, and
the promotion is refused by default, naming what changed (``--on-conflict replace`` or
``version`` go on regardless, as for any other conflict).

The checksum now is computed by the service's :class:`~omnilab.services.forking.Forker`
with the fork's own read-only reads and selection (``where=``, ``sample=``, ``limit=``),
by the method recorded, so that the two compare exactly.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from omnilab.errors import OmnilabError
from omnilab.promote.items import item_from_dict
from omnilab.services.promotable import Promotable, SinceFork

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.progress import Reporter
    from omnilab.tracking.records import RunRecord


def check(
    record: RunRecord, items: list[Promotable], settings: Settings, reporter: Reporter
) -> list[SinceFork | None]:
    """Per promoted item, whether production changed since the fork; None for an item
    the run was not forked from (or a run with no seeds)."""
    seeds: dict[str, tuple[Promotable, dict[str, Any]]] = {}
    for seed in record.seeds or []:
        with contextlib.suppress(OmnilabError, TypeError):
            declared = item_from_dict(seed.get("item") or {})
            seeds[declared.target_key] = (declared, seed)
    out: list[SinceFork | None] = []
    for item in items:
        found = seeds.get(item.target_key)
        if found is None or found[0].kind != item.kind:
            out.append(None)
            continue
        out.append(_one(*found, settings, reporter))
    return out


def _one(
    declared: Promotable, seed: dict[str, Any], settings: Settings, reporter: Reporter
) -> SinceFork:
    production = seed.get("production") or {}
    at_fork = production.get("checksum")
    since = SinceFork(seed=seed.get("item") or {}, partial=declared.selects, changed=False)
    since.at_fork = at_fork
    since.run = seed.get("run") or {}
    url = declared.production_url(settings)
    if seed.get("url") and seed["url"] != url:
        since.changed = True
        since.what = f"the run was forked from another production ({seed['url']}, now {url})"
        return since
    assert declared.forker_class is not None
    forker = declared.forker_class([declared], settings, reporter)
    try:
        now = forker.production_checksum(declared, at_fork or {})
    finally:
        forker.close()
    since.now = now
    since.changed = now != at_fork
    if since.changed:
        since.what = _what(declared, at_fork, now)
    return since


def _what(item: Promotable, at_fork: dict[str, Any] | None, now: dict[str, Any] | None) -> str:
    """What changed, in words: the counts then and now, and the checksums."""
    if now is None:
        return f"production's {item.target} is gone since the fork"
    unit = item.unit
    then_count = (at_fork or {}).get(unit)
    now_count = now.get(unit)
    counts = (
        f"{then_count:,} {unit} at fork, {now_count:,} now"
        if isinstance(then_count, int) and isinstance(now_count, int)
        else ""
    )
    digest_then, digest_now = _digest(at_fork), _digest(now)
    parts = [p for p in (counts, f"checksum {digest_then} at fork, {digest_now} now") if p]
    return f"production's {item.target} changed since the fork ({'; '.join(parts)})"


def _digest(checksum: dict[str, Any] | None) -> str:
    if not checksum:
        return "-"
    for name in ("sum", "xor128", "xor160", "payloads_sum"):
        if checksum.get(name):
            value = str(checksum[name])
            if name == "payloads_sum" and checksum.get("vectors_sum"):
                value += "/" + str(checksum["vectors_sum"])
            return value[:16]
    return "?"
