"""The git commit, branch and dirtiness of the repository holding a run's file, and how
to know, without asking git again, that an earlier reading is still true.

Asking git costs a subprocess (milliseconds) on every run. A worker's spare process
reads it ahead of time (:func:`prefetch`) together with the status (inode, size, mtime,
ctime) of everything that reading depends on: every tracked file and the folders holding
them, the repository's HEAD, the branch it points to, the index, the configuration. When
the run comes, :func:`git_info` compares those again (a few ``stat`` calls) and asks git
afresh if anything differs, so a changed tree is never recorded stale.

A change leaves a new ctime, which the kernel sets to "now" and nobody can set back. So
a reading is only kept when everything it depends on is older than :data:`SETTLE_S` when
git was asked: a later change then always shows as a different ctime, even on a file
system whose clock is coarse. A repository that cannot be watched soundly this way (too
many files, submodules, a reftable, ``GIT_DIR`` and the like) is simply asked every time.
"""

from __future__ import annotations

import os
import stat as stat_module
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Anything changed this recently when git was asked makes the reading not worth keeping.
SETTLE_S = 2.0
#: More tracked files than this: stat-ing them all costs about what asking git does.
MAX_FILES = 2000

#: Variables that change which repository, index or configuration git reads.
_LOCATING = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
        "GIT_OBJECT_DIRECTORY",
        "GIT_NAMESPACE",
    }
)

_Signature = tuple[int, int, int, int, int] | None


@dataclass(frozen=True)
class _Reading:
    info: dict[str, Any] | None
    stamps: tuple[tuple[str, bool, _Signature], ...]  # path, lstat?, signature

    def current(self) -> bool:
        return all(_signature(path, link) == sig for path, link, sig in self.stamps)


_readings: dict[Path, _Reading] = {}


def git_info(path: Path) -> dict[str, Any] | None:
    """Commit, branch and dirtiness of the repository holding ``path``; None outside one."""
    directory = (path if path.is_dir() else path.parent).resolve()
    reading = _readings.get(directory)
    if reading is not None:
        if reading.current():
            return dict(reading.info) if reading.info is not None else None
        del _readings[directory]
    return _ask_git(directory)


def prefetch(directory: Path) -> None:
    """Read ``directory``'s git state now and keep it for :func:`git_info`, when it can
    be told later that it has not changed."""
    directory = directory.resolve()
    reading = _read(directory)
    if reading is not None:
        _readings[directory] = reading
    else:
        _readings.pop(directory, None)


def _git(directory: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            # Reading must not rewrite the user's index (and change what it watches).
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _ask_git(directory: Path) -> dict[str, Any] | None:
    """One ``git status``: it names the commit and the branch, and lists changes."""
    out = _git(directory, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if out is None:
        return None
    commit = branch = None
    dirty = False
    for line in out.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split(" ", 2)[2]
        elif line.startswith("# branch.head "):
            branch = line.split(" ", 2)[2]
        elif line and not line.startswith("#"):
            dirty = True
    if not commit or commit == "(initial)":  # no commit yet: as `git rev-parse HEAD` fails
        return None
    branch = "HEAD" if branch == "(detached)" else branch  # as `rev-parse --abbrev-ref`
    return {"commit": commit, "branch": branch, "dirty": dirty}


def _read(directory: Path) -> _Reading | None:
    if any(name in _LOCATING or name.startswith("GIT_CONFIG") for name in os.environ):
        return None  # the repository is not found the usual way: not worth second-guessing
    began = time.time()
    info = _ask_git(directory)
    watched = _watched_outside(directory) if info is None else _watched_inside(directory)
    if watched is None:
        return None
    stamps = tuple((path, link, _signature(path, link)) for path, link in watched)
    settled = (began - SETTLE_S) * 1e9
    for _, _, sig in stamps:
        if sig is not None and (sig[2] >= settled or sig[3] >= settled):
            return None  # changed just now: a change in the same clock tick could hide
    return _Reading(info, stamps)


def _watched_outside(directory: Path) -> list[tuple[str, bool]] | None:
    """Not in a repository (or git is missing): stays so while no ``.git`` appears in
    the folder or above it."""
    candidates = [d / ".git" for d in (directory, *directory.parents)]
    if any(os.path.lexists(c) for c in candidates):
        return None  # a repository git would not read (ownership, damage): ask each time
    return [(str(c), True) for c in candidates]


def _watched_inside(directory: Path) -> list[tuple[str, bool]] | None:
    dirs = _git(
        directory,
        "rev-parse",
        "--path-format=absolute",
        "--show-toplevel",
        "--git-dir",
        "--git-common-dir",
    )
    if dirs is None:
        return None
    try:
        top, git_dir, common_dir = (Path(p) for p in dirs.splitlines())
    except ValueError:
        return None
    files = _git(top, "ls-files", "-z", "--stage")  # the whole tree's, relative to its top
    if files is None:
        return None
    entries = [e for e in files.split("\0") if e]
    if len(entries) > MAX_FILES or (common_dir / "reftable").exists():
        return None
    watched: list[tuple[str, bool]] = []
    folders = {top, directory}
    for entry in entries:
        meta, _, name = entry.partition("\t")
        if meta.startswith("160000"):
            return None  # a submodule: its own tree decides, not watched here
        path = top / name
        watched.append((str(path), True))
        folders.update(path.parents[: len(path.relative_to(top).parts) - 1])
    # A repository nested between the folder and the top would take over.
    watched += [(str(d / ".git"), True) for d in (directory, *directory.parents) if d != top]
    watched += [(str(d), True) for d in sorted(folders)]  # new files (.gitattributes)
    watched += [(str(top / ".git"), True)]
    head = git_dir / "HEAD"
    watched += [(str(head), False), (str(git_dir / "index"), False)]
    try:
        target = head.read_text().strip()
    except OSError:
        return None
    if target.startswith("ref: "):
        watched.append((str(common_dir / target[5:]), False))
    watched += [
        (str(common_dir / "packed-refs"), False),
        (str(common_dir / "config"), False),
        (str(git_dir / "config.worktree"), False),
        (str(common_dir / "info" / "attributes"), False),
    ]
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    watched += [
        (str(home / ".gitconfig"), False),
        (str(xdg / "git" / "config"), False),
        (str(xdg / "git" / "attributes"), False),
        ("/etc/gitconfig", False),
    ]
    return watched


def _signature(path: str, link: bool) -> _Signature:
    try:
        st = os.lstat(path) if link else os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, stat_module.S_IFMT(st.st_mode))
