"""Completions cached in Redis, keyed by everything that shapes the answer.

Keys are ``omnilab:completion:<sha256>`` (plain string values holding JSON, no TTL), so
``RedisKeys("omnilab:completion:*")`` promotes a run's cache like any other keys.

A run's stack, and so its Redis, is new for every run. What makes a re-run free:

- within one stack (a notebook's ``omnilab.stack(...)``, or a kept stack), the run's own
  Redis already holds the answers;
- across runs, ``sources``: other Redis servers read (never written) for keys the run's
  Redis lacks, typically production Redis after ``omnilab promote`` copied a run's cache
  there. A hit there is copied into the run's Redis, so the run's own cache is complete
  and can be promoted again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omnilab.errors import UsageError
from omnilab.redact import redact_text, redact_url

PREFIX = "omnilab:completion:"
#: Bumped when the stored record's shape changes, so old entries are not misread.
FORMAT = 1


def cache_key(request: dict[str, Any]) -> str:
    """The key of one request: canonical JSON (sorted keys) hashed."""
    canonical = json.dumps({"format": FORMAT, **request}, sort_keys=True, separators=(",", ":"))
    return PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class CacheSource:
    """A Redis read for entries the run's own Redis lacks."""

    label: str
    client: Any


@dataclass
class CompletionCache:
    """The run's Redis (written) plus read-only sources, in order."""

    primary: Any | None
    sources: Sequence[CacheSource] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.primary is not None or bool(self.sources)

    def get_many(self, keys: Sequence[str]) -> dict[str, tuple[dict[str, Any], str]]:
        """``key -> (record, where)`` for the keys found; one round trip per server."""
        found: dict[str, tuple[dict[str, Any], str]] = {}
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return found
        if self.primary is not None:
            for key, raw in zip(wanted, self.primary.mget(wanted), strict=True):
                if raw is not None:
                    found[key] = (json.loads(raw), "run")
        for source in self.sources:
            missing = [k for k in wanted if k not in found]
            if not missing:
                break
            copied: dict[str, str] = {}
            for key, raw in zip(missing, source.client.mget(missing), strict=True):
                if raw is not None:
                    text = raw.decode() if isinstance(raw, bytes) else raw
                    found[key] = (json.loads(text), source.label)
                    copied[key] = text
            if copied and self.primary is not None:
                self.primary.mset(copied)
        return found

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.put_many({key: record})

    def put_many(self, records: dict[str, dict[str, Any]]) -> None:
        """Store answers in one round trip (MSET)."""
        if self.primary is not None and records:
            self.primary.mset({k: json.dumps(r, separators=(",", ":")) for k, r in records.items()})

    def close(self) -> None:
        for source in self.sources:
            source.client.close()


def open_source(url: str, production_url: str) -> CacheSource:
    """Connect to a read-through source: a Redis URL, or ``production`` (``REDIS_URL``)."""
    import redis

    real = production_url if url == "production" else url
    label = redact_url(real)
    if url == "production":
        label = f"production ({label})"
    try:
        client = redis.Redis.from_url(real, socket_connect_timeout=2, socket_timeout=5)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise UsageError(
            f"completion cache source {label} does not answer "
            f"({type(exc).__name__}: {redact_text(str(exc), real)})"
        ) from None
    return CacheSource(label=label, client=client)
