"""Naming an experiment: FILE[:Class], and every way that can go wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnilab.errors import ExperimentLoadError
from omnilab.loader import load, resolve, split_ref
from tests.support import EXPERIMENTS, HELLO


def test_file_with_one_experiment_needs_no_name() -> None:
    loaded = load(str(HELLO))
    assert loaded.cls.__name__ == "Hello"
    assert loaded.ref.endswith("experiments/hello.py:Hello")


def test_class_name_picks_one_of_several() -> None:
    assert load(f"{EXPERIMENTS / 'several.py'}:Second").cls.__name__ == "Second"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nowhere/missing.py", "no such file"),
        (str(EXPERIMENTS), "is a directory"),
        (str(EXPERIMENTS / "syntax_error.py"), "syntax error (line 3)"),
        (str(EXPERIMENTS / "bad_import.py"), "ModuleNotFoundError"),
        (str(EXPERIMENTS / "no_experiment.py"), "no Experiment subclass"),
        (str(EXPERIMENTS / "several.py"), "holds several experiments (First, Second)"),
        (f"{EXPERIMENTS / 'several.py'}:Third", "no experiment named 'Third'"),
    ],
)
def test_bad_references_name_the_problem(ref: str, message: str) -> None:
    with pytest.raises(ExperimentLoadError) as info:
        load(ref)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_not_a_python_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ExperimentLoadError, match="not a Python file"):
        load(str(text))


def test_imported_experiments_do_not_count(tmp_path: Path) -> None:
    """A file that imports Hello from elsewhere and defines its own has one experiment."""
    (tmp_path / "mine.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(HELLO.parent)!r})\n"
        "from hello import Hello  # noqa\n"
        "from omnilab import Experiment\n"
        "class Mine(Experiment):\n"
        "    def run(self, ctx):\n"
        "        return {}\n"
    )
    assert load(str(tmp_path / "mine.py")).cls.__name__ == "Mine"


def test_split_ref_keeps_paths_with_colons_apart() -> None:
    assert split_ref("a/b.py:Cls") == ("a/b.py", "Cls")
    assert split_ref("a/b.py") == ("a/b.py", None)
    assert split_ref("C:/x/y.py") == ("C:/x/y.py", None)


def test_resolve_accepts_classes_and_rejects_others() -> None:
    cls = load(str(HELLO)).cls
    assert resolve(cls).cls is cls
    with pytest.raises(ExperimentLoadError, match="not an Experiment subclass"):
        resolve(int)  # type: ignore[arg-type]
