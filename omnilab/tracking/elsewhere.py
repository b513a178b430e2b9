"""Runs recorded in a tracking store this project no longer uses, said in one line.

The tracking store used to follow ``POSTGRES_URL`` and to live in ``.omnilab/`` of the
working directory; it no longer does either. A user who finds no runs (``runs ls``) or
no matching run (``runs show``, ``promote``) may have them there, and must be told
where rather than believe them lost; one who finds some (``runs ls``) may not know that
older ones are elsewhere, and is told in a dim line under the listing. Looking is kept
cheap: one short connection to ``POSTGRES_URL`` (only beside an empty answer), and for
an embedded store (in the working directory or a folder between it and the project
root) only a look at its folder (its runs are counted only when its server is already
running: none is started for a hint).
"""

from __future__ import annotations

import os
from pathlib import Path

from omnilab.config import Settings, project_root
from omnilab.redact import redact_url
from omnilab.tracking.embedded import EmbeddedPostgres

#: Seconds a hint waits for POSTGRES_URL's server: it is shown beside an empty answer.
CONNECT_TIMEOUT = 2


def _count_runs(dsn: str) -> int | None:
    """Runs in the ``omnilab`` schema at ``dsn``: None when it cannot be read (no server,
    no schema, not allowed), never an error."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            row = conn.execute("SELECT to_regclass('omnilab.runs') IS NOT NULL").fetchone()
            if not row or not row[0]:
                return None
            counted = conn.execute("SELECT count(*) FROM omnilab.runs").fetchone()
    except (psycopg.Error, ValueError, OSError):
        return None
    return int(counted[0]) if counted else None


def _runs(count: int | None) -> str:
    if count is None:
        return "Earlier runs may be"
    return f"{count} run is" if count == 1 else f"{count} runs are"


def _folders_up_to_root(cwd: Path) -> list[Path]:
    """The working directory and every folder above it up to the project root: where an
    older omnilab (or a run started in a subfolder before the project had a root) left
    an embedded store."""
    root = project_root(cwd)
    folders = [cwd]
    if cwd.is_relative_to(root):
        folders += [parent for parent in cwd.parents if parent.is_relative_to(root)]
    return folders


def runs_elsewhere(settings: Settings, *, local_only: bool = False) -> str | None:
    """One line saying where runs are that the store in use does not hold, or None.

    ``local_only``: look only at folders (a stat each), not at ``POSTGRES_URL``'s server;
    for a hint under a listing that did find runs, which must not wait on the network."""
    in_use = settings.tracking_url
    postgres = settings.postgres_url
    if postgres and postgres != in_use and not local_only:
        count = _count_runs(postgres)
        if count:
            return (
                f"{_runs(count)} recorded in the tracking store at {redact_url(postgres)} "
                "(POSTGRES_URL), which omnilab no longer uses for tracking (POSTGRES_URL is "
                "production's): set OMNILAB_TRACKING_URL to that URL to see them"
            )
    home = None if in_use else settings.home.resolve()
    cwd = Path.cwd().resolve()
    for candidate in dict.fromkeys(folder / ".omnilab" for folder in _folders_up_to_root(cwd)):
        folder = candidate.resolve()
        if folder == home or not (folder / "pgdata" / "PG_VERSION").is_file():
            continue
        store = EmbeddedPostgres(folder, settings.service_user)
        count = _count_runs(store.dsn) if store.running() else None
        if count == 0:
            continue
        why = "a tracking URL is set" if home is None else f"its store is {home}"
        near = folder.is_relative_to(cwd) or cwd.is_relative_to(folder.parent)
        shown = os.path.relpath(folder, cwd) if near else str(folder)
        return (
            f"{_runs(count)} recorded in the embedded store at {shown}, which this project no "
            f"longer uses ({why}): OMNILAB_HOME={shown} omnilab runs ls lists them"
        )
    return None
