"""Finding the experiment a user names: ``experiments/foo.py`` or ``experiments/foo.py:Cls``.

Every way this can go wrong is a :class:`~omnilab.errors.ExperimentLoadError` with one
line naming the file and the problem, never a traceback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from omnilab.errors import ExperimentLoadError, UsageError
from omnilab.experiment import Experiment, is_experiment_class


@dataclass(frozen=True)
class LoadedExperiment:
    cls: type[Experiment]
    path: Path | None

    @property
    def ref(self) -> str:
        """``file.py:Class``: how to name this experiment again."""
        if self.path is None:
            return f"{self.cls.__module__}:{self.cls.__qualname__}"
        return f"{self.path}:{self.cls.__name__}"


def split_ref(ref: str) -> tuple[str, str | None]:
    """``a/b.py:Cls`` -> (``a/b.py``, ``Cls``); a plain path has no class name."""
    path, sep, name = ref.rpartition(":")
    if sep and path and name.isidentifier():
        return path, name
    return ref, None


def _where(exc: BaseException, path: Path) -> str:
    """`` (line N)`` of the deepest frame in the experiment file, when there is one."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == path:
            return f" (line {frame.lineno})"
    return ""


def code_sha256(path: Path) -> str:
    """The content hash of an experiment's file: what a run records as the code it ran,
    and what a worker compares with the file it has under the same name."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_file(path: Path) -> ModuleType:
    """Import ``path`` as a fresh module; its folder is importable for sibling modules."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"omnilab_experiment_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ExperimentLoadError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise ExperimentLoadError(f"{path}: syntax error{_where(exc, path)}: {exc.msg}") from None
    except UsageError as exc:
        # omnilab's own refusal while the file defined its classes (a bad `requires`):
        # its message already names the problem.
        sys.modules.pop(module_name, None)
        raise ExperimentLoadError(f"{path}{_where(exc, path)}: {exc}") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ExperimentLoadError(
            f"{path}: cannot import{_where(exc, path)}: {type(exc).__name__}: {exc}"
            f"{_install_hint(exc)}"
        ) from None
    return module


#: Top-level modules that an extra of omnilab installs, and that extra.
EXTRAS = {"qiskit": "aer", "qiskit_aer": "aer", "torch": "torch", "pandas": "notebook"}


def _install_hint(exc: BaseException) -> str:
    """``; install it with: pip install 'omnilab[aer]'`` when the missing module is one
    that an extra of omnilab brings (the examples' Qiskit, torch...)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return ""
    extra = EXTRAS.get(exc.name.split(".")[0])
    return f"; install it with: pip install 'omnilab[{extra}]'" if extra else ""


def experiments_in(module: ModuleType) -> list[type[Experiment]]:
    """Experiment classes defined in ``module`` itself (not ones it imported)."""
    return [
        obj
        for obj in vars(module).values()
        if is_experiment_class(obj) and obj.__module__ == module.__name__
    ]


def load(ref: str) -> LoadedExperiment:
    """Resolve ``FILE[:Class]`` to an experiment class."""
    file_part, class_name = split_ref(ref)
    path = Path(file_part).expanduser()
    if not path.exists():
        raise ExperimentLoadError(f"{file_part}: no such file")
    if path.is_dir():
        raise ExperimentLoadError(f"{file_part}: is a directory; name a .py file")
    if path.suffix != ".py":
        raise ExperimentLoadError(f"{file_part}: not a Python file (.py)")
    path = path.resolve()
    module = import_file(path)
    found = experiments_in(module)
    names = ", ".join(sorted(c.__name__ for c in found))
    if class_name is not None:
        for cls in found:
            if cls.__name__ == class_name:
                check_runnable(cls, f"{file_part}: ")
                return LoadedExperiment(cls, path)
        hint = f"it has {names}" if found else "it defines no Experiment subclass"
        raise ExperimentLoadError(f"{file_part}: no experiment named {class_name!r} ({hint})")
    if not found:
        raise ExperimentLoadError(
            f"{file_part}: no Experiment subclass in this file "
            "(define `class MyExperiment(omnilab.Experiment)`)"
        )
    # A base class that leaves run() to its subclasses is not one of the file's
    # experiments; a file whose only class forgot run() is told so.
    runnable = [c for c in found if defines_run(c)] or found
    if len(runnable) > 1:
        names = ", ".join(sorted(c.__name__ for c in runnable))
        raise ExperimentLoadError(
            f"{file_part}: holds several experiments ({names}); "
            f"pick one with {file_part}:{sorted(c.__name__ for c in runnable)[0]}"
        )
    check_runnable(runnable[0], f"{file_part}: ")
    return LoadedExperiment(runnable[0], path)


def defines_run(cls: type[Experiment]) -> bool:
    """Whether ``cls`` (or a base of it below :class:`Experiment`) implements ``run``."""
    return getattr(cls, "run", None) is not Experiment.run


def check_runnable(cls: type[Experiment], where: str = "") -> None:
    """Refuse an experiment without ``run()`` now, before its stack would start only
    to meet a NotImplementedError."""
    if not defines_run(cls):
        raise ExperimentLoadError(
            f"{where}{cls.__name__} does not define run(self, ctx): the method that does "
            "the experiment's work"
        )


def resolve(experiment: type[Experiment] | Experiment | str) -> LoadedExperiment:
    """Accept a class (Python API) or a ``FILE[:Class]`` reference (CLI, API); an instance
    is forgiven as its class."""
    if isinstance(experiment, str):
        return load(experiment)
    if isinstance(experiment, Experiment):
        experiment = type(experiment)
    if not is_experiment_class(experiment):
        raise ExperimentLoadError(
            f"{experiment!r} is not an Experiment subclass or a 'file.py[:Class]' reference"
        )
    check_runnable(experiment)
    source = sys.modules.get(experiment.__module__)
    file = getattr(source, "__file__", None)
    return LoadedExperiment(experiment, Path(file).resolve() if file else None)
