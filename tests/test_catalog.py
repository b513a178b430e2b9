"""The experiments a server may run: one folder, reloaded when it changes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from omnilab.catalog import Catalog, UnknownExperiment

ONE = """
from omnilab import Experiment, Params

class {name}(Experiment):
    class Params(Params):
        n: int = {n}

    def run(self, ctx):
        return {{"n": ctx.params.n}}
"""


def test_experiments_by_name_problems_reported(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(ONE.format(name="Alpha", n=1))
    (tmp_path / "b.py").write_text("import nowhere_to_be_found\n")
    (tmp_path / "c.py").write_text(ONE.format(name="Alpha", n=2))
    (tmp_path / "d.py").write_text(ONE.format(name="Delta", n=4))
    (tmp_path / "_private.py").write_text("raise SystemExit('never imported')\n")
    catalog = Catalog(tmp_path)
    assert catalog.names() == ["Delta"]
    problems = " | ".join(catalog.problems)
    assert "b.py: cannot import" in problems
    assert "'Alpha' is defined twice (a.py:Alpha, c.py:Alpha)" in problems
    assert catalog.get("Delta").source == "d.py:Delta"
    with pytest.raises(UnknownExperiment, match=r"'Alpha'.*available: Delta"):
        catalog.get("Alpha")


def test_a_changed_folder_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(ONE.format(name="Alpha", n=1))
    catalog = Catalog(tmp_path, recheck_s=0)
    assert catalog.get("Alpha").cls.Params().n == 1
    (tmp_path / "a.py").write_text(ONE.format(name="Alpha", n=22))
    later = time.time() + 5
    os.utime(tmp_path / "a.py", (later, later))
    (tmp_path / "b.py").write_text(ONE.format(name="Beta", n=3))
    assert catalog.get("Alpha").cls.Params().n == 22
    assert catalog.names() == ["Alpha", "Beta"]
    (tmp_path / "b.py").unlink()
    with pytest.raises(UnknownExperiment):
        catalog.get("Beta")


def test_a_missing_folder_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "nope")
    assert len(catalog) == 0
    assert "no such folder" in catalog.problems[0]
