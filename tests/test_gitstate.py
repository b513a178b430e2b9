"""A git reading kept ahead of a run is used only while it is still true: every change
that git would report (an edit, a commit, a checkout, a new repository) is seen."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from omnilab import gitstate


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _age(root: Path, seconds: float = gitstate.SETTLE_S + 1) -> None:
    """Back-date everything (as if made a while ago), so that a reading is kept."""
    then = time.time() - seconds
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            os.utime(Path(folder) / name, (then, then), follow_symlinks=False)
    os.utime(root, (then, then))
    # ctime cannot be back-dated: wait it out instead.
    time.sleep(max(0.0, gitstate.SETTLE_S + 0.1 - (time.time() - root.stat().st_ctime)))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "experiments").mkdir(parents=True)
    (root / "experiments" / "exp.py").write_text("x = 1\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    _age(root)
    return root


def _prefetched(folder: Path) -> dict | None:
    gitstate.prefetch(folder)
    assert folder in gitstate._readings, "a settled tree should be kept"
    return gitstate.git_info(folder / "exp.py")


def test_a_kept_reading_matches_git_and_costs_no_subprocess(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = repo / "experiments"
    info = _prefetched(folder)
    assert info == {"commit": _git(repo, "rev-parse", "HEAD"), "branch": "main", "dirty": False}

    def no_git(*args: object, **kwargs: object) -> None:
        raise AssertionError("git was asked again although nothing changed")

    monkeypatch.setattr(gitstate.subprocess, "run", no_git)
    assert gitstate.git_info(folder / "exp.py") == info


def test_an_edit_right_after_the_reading_is_seen(repo: Path) -> None:
    folder = repo / "experiments"
    _prefetched(folder)
    (folder / "exp.py").write_text("x = 2\n")  # same size, same second
    assert gitstate.git_info(folder / "exp.py")["dirty"] is True


def test_a_commit_and_a_checkout_are_seen(repo: Path) -> None:
    folder = repo / "experiments"
    first = _prefetched(folder)
    (folder / "exp.py").write_text("x = 22\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two")
    now = gitstate.git_info(folder / "exp.py")
    assert now["commit"] == _git(repo, "rev-parse", "HEAD") != first["commit"]
    assert now["dirty"] is False
    _age(repo)
    _prefetched(folder)
    _git(repo, "checkout", "-q", first["commit"])
    detached = gitstate.git_info(folder / "exp.py")
    assert detached == {"commit": first["commit"], "branch": "HEAD", "dirty": False}


def test_a_staged_change_is_seen(repo: Path) -> None:
    folder = repo / "experiments"
    _prefetched(folder)
    (repo / "new.txt").write_text("new\n")
    _git(repo, "add", "new.txt")
    assert gitstate.git_info(folder / "exp.py")["dirty"] is True


def test_a_repository_made_after_the_reading_is_seen(tmp_path: Path) -> None:
    folder = tmp_path / "plain" / "experiments"
    folder.mkdir(parents=True)
    _age(tmp_path / "plain")
    assert _prefetched(folder) is None
    _git(folder.parent, "init", "-q", "-b", "main")
    (folder / "exp.py").write_text("x = 1\n")
    _git(folder.parent, "add", ".")
    _git(folder.parent, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "1")
    assert gitstate.git_info(folder / "exp.py")["commit"] == _git(
        folder.parent, "rev-parse", "HEAD"
    )


def test_a_tree_changed_just_before_the_reading_is_not_kept(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    (root / "exp.py").write_text("x = 1\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "1")
    gitstate.prefetch(root)
    assert root not in gitstate._readings
    assert gitstate.git_info(root / "exp.py")["dirty"] is False
