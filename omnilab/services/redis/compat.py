"""Which Redis or Valkey server can read which ``DUMP`` format.

``DUMP`` payloads end with the RDB format version of the server that wrote them (2
bytes, little-endian) and a CRC64; ``RESTORE`` refuses a payload whose version is newer
than its own ("DUMP payload version or checksum are wrong"). Valkey 9 writes format 80,
which no Redis reads: a run on the local runtime's Valkey cannot be promoted by
``DUMP``/``RESTORE`` into a Redis 7.0 production (Debian 12's), so the plan says so
before anything is copied and the promotion copies element by element instead.

Versions are read from the servers themselves: ``INFO server`` for the name and version,
and the trailer of a ``DUMP`` for the format. :data:`RDB_FORMATS` is only the fallback
for a server with no small key to ``DUMP`` (production is never written to for this).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis as redis_lib

#: The RDB format each server release writes (and the newest it reads), by (name, major,
#: minor); the first entry whose version is not newer than the server's applies. Measured:
#: Redis 7.0.15 writes 10, Valkey 9.1.2 writes 80. From the servers' sources: Redis 6.x 9,
#: 7.2 11, 7.4 12; Valkey 7.2 and 8.x 11.
RDB_FORMATS: dict[str, list[tuple[tuple[int, int], int]]] = {
    "redis": [((7, 4), 12), ((7, 2), 11), ((7, 0), 10), ((6, 0), 9), ((5, 0), 9)],
    "valkey": [((9, 0), 80), ((7, 2), 11)],
}

#: Valkey 9 numbers its own formats from 80 and treats 12 to 79 as Redis's (formats it
#: does not read, by default).
VALKEY_OWN = 80
REDIS_ONLY = (12, 79)

#: What to do when production cannot read the run's DUMPs and the element copy cannot
#: carry every key: a run on a Redis whose DUMPs production reads.
FIX = (
    "install the Redis production runs (Debian: apt install redis-server) so that the "
    "local runtime picks it (it prefers a server production reads), or use --runtime "
    "docker (omnilab/redis:7.0-bookworm, made by `omnilab images build redis`)"
)

#: What ``DUMP`` of a key no bigger than this costs is nothing; a production key bigger
#: than that is not serialised just to learn the server's format.
_SMALL = 4096


@dataclass(frozen=True)
class ServerFormat:
    """A server's name and version, and the ``DUMP`` format it writes and reads."""

    name: str  # "redis" or "valkey"
    version: str
    #: The newest RDB format it reads (the one it writes); None when unknown.
    rdb: int | None
    #: How ``rdb`` was found: "dump" (read from a DUMP) or "version" (from the table).
    how: str = "version"

    @property
    def label(self) -> str:
        return f"{self.name.capitalize()} {self.version}"

    def reads(self, rdb: int | None) -> bool | None:
        """Whether this server RESTOREs payloads of format ``rdb`` (None: cannot tell)."""
        if rdb is None or self.rdb is None:
            return None
        low, high = REDIS_ONLY
        if self.name == "valkey" and self.rdb >= VALKEY_OWN and low <= rdb <= high:
            return False
        return rdb <= self.rdb

    def describe(self) -> str:
        fmt = f"DUMP format {self.rdb}" if self.rdb is not None else "DUMP format unknown"
        return f"{self.label} ({fmt})"


def _version_tuple(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def rdb_for(name: str, version: str) -> int | None:
    """The RDB format a release writes, from :data:`RDB_FORMATS` (None if too old or
    not a known server)."""
    wanted = _version_tuple(version)
    if wanted is None:
        return None
    for since, rdb in RDB_FORMATS.get(name, []):
        if wanted >= since:
            return rdb
    return None


def payload_rdb(payload: bytes | None) -> int | None:
    """The RDB format a ``DUMP`` payload was written in (its trailer's first 2 bytes)."""
    if not payload or len(payload) < 10:
        return None
    return int.from_bytes(payload[-10:-8], "little")


def identify(info: dict[str, Any]) -> tuple[str, str]:
    """(name, version) from ``INFO server``: Valkey reports a Redis version too (7.2.4,
    for compatibility), so its own ``valkey_version`` comes first."""
    if info.get("valkey_version") or info.get("server_name") == "valkey":
        return "valkey", str(info.get("valkey_version") or info.get("redis_version", "?"))
    return "redis", str(info.get("redis_version", "?"))


def server_format(client: redis_lib.Redis, sample: Any | None = None) -> ServerFormat:
    """What ``client``'s server is and which DUMP format it writes.

    ``sample``: a key to ``DUMP`` (the run's, on its own server). Without it a few random
    keys are tried, and only a small string is ever dumped: read-only, and nothing big is
    serialised on production. With no such key the format comes from the version.
    """
    import redis as redis_lib

    try:
        name, version = identify(client.info("server"))
    except redis_lib.ResponseError:  # INFO not allowed to this user: nothing is known
        return ServerFormat("redis", "?", None)
    candidates: list[Any] = [sample] if sample is not None else []
    try:
        if sample is None:
            for _ in range(5):
                key = client.randomkey()
                if key is None:
                    break
                if client.type(key) in (b"string", "string") and client.strlen(key) <= _SMALL:
                    candidates.append(key)
                    break
        for key in candidates:
            rdb = payload_rdb(client.dump(key))
            if rdb is not None:
                return ServerFormat(name, version, rdb, "dump")
    except redis_lib.ResponseError:  # a command this user may not run: the version says
        pass
    return ServerFormat(name, version, rdb_for(name, version))
