"""Finding and checking a Qdrant server binary.

The same binary serves two purposes: the local runtime runs it as a stack's server, and
``omnilab images build qdrant`` copies it into ``omnilab/qdrant:<version>-bookworm`` (no
Debian package provides Qdrant, and an air-gapped host has no registry to pull the
official image from). Either way it is checked before anything starts: a program that is
not Qdrant, or a Qdrant omnilab does not support, is a one-line error rather than a stack
that never becomes ready.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from omnilab.errors import ServiceUnavailable

#: The Qdrant omnilab pins: the official image's tag and omnilab's own image are this
#: version, and the tests run it.
VERSION = "1.19.0"
#: The oldest server omnilab supports: the Query API (``query_points``) came in 1.10,
#: and qdrant-client's calls, promotion's aliases and snapshots work from there on.
MIN_VERSION = (1, 10, 0)
#: Where a user names the binary explicitly (else ``qdrant`` on PATH).
VARIABLE = "OMNILAB_QDRANT_BINARY"
#: Where the releases are, for messages.
RELEASES = "https://github.com/qdrant/qdrant/releases"

_VERSION_LINE = re.compile(r"^qdrant (\d+)\.(\d+)\.(\d+)\b")


@dataclass(frozen=True)
class QdrantBinary:
    """A Qdrant server binary that answered ``--version`` as Qdrant does."""

    path: Path
    version: str
    #: How it was found: ``--binary``, ``OMNILAB_QDRANT_BINARY`` or ``PATH``.
    origin: str


def find(given: Path | str | None = None) -> QdrantBinary | None:
    """``given``, else ``$OMNILAB_QDRANT_BINARY``, else ``qdrant`` on PATH, checked; None
    when none is named nor on PATH. A named binary that is missing, does not run, is not
    Qdrant or is an unsupported version raises ServiceUnavailable (one line)."""
    if given is not None:
        return check(Path(given), "--binary")
    named = os.environ.get(VARIABLE, "").strip()
    if named:
        return check(Path(named).expanduser(), VARIABLE)
    found = shutil.which("qdrant")
    return check(Path(found), "PATH") if found else None


def check(path: Path, origin: str) -> QdrantBinary:
    """``path`` as a :class:`QdrantBinary`, or ServiceUnavailable saying what is wrong."""
    where = f"{path} ({origin})"
    if not path.is_file():
        raise ServiceUnavailable(f"qdrant: {where} is not a file")
    if not os.access(path, os.X_OK):
        raise ServiceUnavailable(f"qdrant: {where} is not executable")
    stat = path.stat()
    version = _version(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if version.startswith("!"):
        raise ServiceUnavailable(f"qdrant: {where} is not a Qdrant server binary ({version[1:]})")
    parts = tuple(int(p) for p in version.split("."))
    if parts < MIN_VERSION or parts[0] != MIN_VERSION[0]:
        lowest = ".".join(map(str, MIN_VERSION[:2]))
        raise ServiceUnavailable(
            f"qdrant: {where} is Qdrant {version}, which omnilab does not support (Qdrant "
            f"{lowest} to 1.x; omnilab pins {VERSION}: {RELEASES}/tag/v{VERSION})"
        )
    return QdrantBinary(path, version, origin)


@lru_cache(maxsize=16)
def _version(path: str, size: int, mtime_ns: int) -> str:
    """``X.Y.Z`` from ``path --version``, or ``!why`` when it does not answer as Qdrant.
    Cached per file version: a stack start and ``doctor`` ask once."""
    try:
        done = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=10,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "!it did not answer `--version` within 10 s"
    except OSError as exc:
        return f"!it does not run here: {exc.strerror or exc}"
    first = (done.stdout.strip().splitlines() or [""])[0]
    match = _VERSION_LINE.match(first)
    if match is None:
        if not first:
            return f"!`--version` printed nothing (exit status {done.returncode})"
        return f"!`--version` says {first[:60]!r}, not `qdrant X.Y.Z`"
    return ".".join(match.groups())
