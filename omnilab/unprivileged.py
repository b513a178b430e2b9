"""Running servers that refuse root (PostgreSQL) when omnilab itself runs as root."""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

from omnilab.errors import ServiceUnavailable


def service_ids(user: str) -> tuple[int, int] | None:
    """uid/gid of the unprivileged service user, or None when omnilab is not root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ServiceUnavailable(
            f"running as root, PostgreSQL needs an unprivileged user, and "
            f"OMNILAB_SERVICE_USER={user!r} does not exist"
        ) from None
    return entry.pw_uid, entry.pw_gid


def grant_traverse(
    path: Path, uid: int, user: str, why: str = "PostgreSQL cannot run as root"
) -> None:
    """Let ``uid`` reach ``path``: add search permission (x, not read) where missing.

    Needed when a project lives under a private home such as ``/root``; each change is
    said on stderr, since it widens what other users may reach.
    """
    for parent in reversed(Path(path).parents):
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            parent.chmod(st.st_mode | 0o001)
            print(
                f"omnilab: allowed user {user!r} to traverse {parent} ({why})",
                file=sys.stderr,
            )


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)
