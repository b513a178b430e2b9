"""Wheels of omnilab and its dependencies, made on the host for an image's build context.

The experiments and codegen images install omnilab with ``pip install --no-index`` from
these wheels, so their build needs no package index inside the build: the host's pip
makes them from its cache or its index, or, on an air-gapped host, from a folder of
wheels brought in beforehand (``OMNILAB_WHEELHOUSE``). The images' Python is Debian
bookworm's 3.11, the same as the host's, so the host's binary wheels fit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from omnilab.runtimes.docker.images.debian_base import ImageBuildError
from omnilab.version import __version__

if TYPE_CHECKING:
    from omnilab.progress import Reporter

#: Extras an image may install besides omnilab's own dependencies (``OMNILAB_IMAGE_EXTRAS``,
#: comma-separated: ``aer``, ``torch``...); none by default, to keep the images lean.
EXTRAS_VARIABLE = "OMNILAB_IMAGE_EXTRAS"
#: A base image for the experiments and codegen images instead of the debootstrap one
#: (a CUDA runtime image for GPU hosts: it must have Python 3.11 as ``python3``).
BASE_VARIABLE = "OMNILAB_IMAGE_BASE"
#: A folder of wheels to take everything from, with no index (air-gapped hosts).
WHEELHOUSE_VARIABLE = "OMNILAB_WHEELHOUSE"
#: The images' Python version, for the markers of the dependencies (bookworm's python3).
PYTHON_VARIABLE = "OMNILAB_IMAGE_PYTHON"
BOOKWORM_PYTHON = "3.11.2"

#: The ``omnilab`` package folder (this file is omnilab/runtimes/docker/images/wheels.py).
_PACKAGE = Path(__file__).resolve().parents[3]
_SOURCE_SUFFIXES = {".py", ".sql", ".lua", ".j2", ".typed"}


def source_tree() -> Path | None:
    """The checkout omnilab runs from (a ``pyproject.toml`` naming omnilab), if any."""
    root = _PACKAGE.parent
    project = root / "pyproject.toml"
    if project.is_file() and 'name = "omnilab"' in project.read_text():
        return root
    return None


def extras() -> list[str]:
    raw = os.environ.get(EXTRAS_VARIABLE, "")
    return sorted({e.strip() for e in raw.split(",") if e.strip()})


def base_override() -> str | None:
    return os.environ.get(BASE_VARIABLE, "").strip() or None


def _dependency_versions() -> list[str]:
    """``name==version`` of omnilab's installed requirements: a new one changes the image.

    From a checkout they are read from its pyproject.toml, not from whichever omnilab
    metadata comes first on ``sys.path`` (a process with the checkout on it, as the tests
    have, finds the stale ``omnilab.egg-info`` that ``pip install -e`` leaves there, and
    would judge an image another process just built out of date).
    """
    tree = source_tree()
    if tree is not None:
        import tomllib

        project = tomllib.loads((tree / "pyproject.toml").read_text())["project"]
        requires = list(project.get("dependencies", []))
    else:
        try:
            requires = metadata.requires("omnilab") or []
        except metadata.PackageNotFoundError:
            return []
    found = []
    for requirement in requires:
        name = requirement.split(";")[0].split("[")[0]
        for stop in "<>=!~ ":
            name = name.split(stop)[0]
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return sorted(set(found))


def source_fingerprint() -> str:
    """A hash of what the wheels would hold: omnilab's files, its version, the versions of
    its dependencies here, the extras and the base chosen. Cheap: nothing is built."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*")):
        if path.is_file() and path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(_PACKAGE)).encode() + b"\0" + path.read_bytes())
    tree = source_tree()
    if tree is not None:
        digest.update((tree / "pyproject.toml").read_bytes())
    for line in (*_dependency_versions(), *extras(), base_override() or "", image_python()):
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()[:16]


#: What a wheel of the checkout is made of: pyproject.toml names these (readme, package,
#: the image recipes as data files).
_WHEEL_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "omnilab", "dockerfiles")


def _source(staging: Path) -> str:
    """What pip builds omnilab's wheel from: a copy of this checkout, else the installed
    version.

    pip builds a folder in place, and setuptools writes its ``build/`` and ``*.egg-info``
    into it: two builds at once (two runs needing images, on one checkout) would write
    the same files. A copy per build shares nothing and leaves the checkout as it was.
    """
    tree = source_tree()
    if tree is None:
        return f"omnilab=={__version__}"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in _WHEEL_INPUTS:
        source = tree / name
        if source.is_dir():
            shutil.copytree(source, staging / name, ignore=junk)
        elif source.is_file():
            shutil.copy2(source, staging / name)
    return str(staging)


def _platform_options() -> list[str]:
    """``--platform`` for every tag this host's wheels may carry (the image is the same
    architecture, on the same glibc or newer: Debian bookworm)."""
    from packaging.tags import platform_tags

    options: list[str] = []
    for tag in platform_tags():
        options += ["--platform", tag]
    return options


def image_python() -> str:
    """The Python version of the images (``OMNILAB_IMAGE_PYTHON``; bookworm's python3)."""
    return os.environ.get(PYTHON_VARIABLE, "").strip() or BOOKWORM_PYTHON


def _pip(command: list[str], what: str, wheelhouse: str | None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(f"    {line}" for line in done.stderr.strip().splitlines()[-15:])
        where = f" from {wheelhouse}" if wheelhouse else ""
        raise ImageBuildError(
            f"the wheels of {what} could not be made{where} (pip exited with "
            f"{done.returncode}); on an air-gapped host set {WHEELHOUSE_VARIABLE} to a folder "
            f"of wheels; last lines:\n{tail}"
        )


def _wheel_requirements(wheel: Path) -> tuple[str, list[str]]:
    """(canonical name, Requires-Dist lines) of a wheel, from its METADATA."""
    import zipfile
    from email.parser import HeaderParser

    from packaging.utils import canonicalize_name, parse_wheel_filename

    name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(meta).decode("utf-8", "replace"))
    return name, headers.get_all("Requires-Dist") or []


def _missing_for_image(folder: Path) -> list[str]:
    """Requirements the image's Python needs that no wheel in ``folder`` provides."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    version = image_python()
    # The image's Python; Marker.evaluate lays these over this process's environment.
    env = {"python_full_version": version, "python_version": ".".join(version.split(".")[:2])}
    wheels = dict(_wheel_requirements(w) for w in folder.glob("*.whl"))
    wanted_extras: dict[str, set[str]] = {"omnilab": set(extras())}
    for _ in range(3):  # extras asked for by one package widen another's requirements
        for requires in wheels.values():
            for line in requires:
                req = Requirement(line)
                if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                    wanted_extras.setdefault(canonicalize_name(req.name), set()).update(req.extras)
    missing: set[str] = set()
    for name, requires in wheels.items():
        for line in requires:
            req = Requirement(line)
            chosen = ["", *sorted(wanted_extras.get(name, set()))]
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in chosen
            ):
                continue
            if canonicalize_name(req.name) not in wheels:
                missing.add(f"{req.name}{req.specifier}")
    return sorted(missing)


def build_wheelhouse(target: Path, reporter: Reporter) -> list[Path]:
    """Wheels of omnilab and every dependency into ``target``; ImageBuildError on failure.

    omnilab's own wheel is built here; its dependencies are the wheels pip picks for the
    image's Python (bookworm's 3.11.2, whose markers may differ from the host's 3.11.x),
    binary wheels only, since the image has no compiler.
    """
    target.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    quiet = ["--quiet", "--disable-pip-version-check"]
    wheelhouse = os.environ.get(WHEELHOUSE_VARIABLE)
    index = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    reporter.note("    wheels: omnilab's own, and its dependencies' for the image's Python")
    own = target / "own"
    # With a wheelhouse there is no index to fetch a build backend from: build with the
    # setuptools of the environment omnilab runs in.
    isolation = ["--no-build-isolation"] if wheelhouse else []
    with tempfile.TemporaryDirectory(prefix="omnilab-wheel-") as staging:
        _pip(
            [
                *pip,
                "wheel",
                *quiet,
                *index,
                *isolation,
                "--no-deps",
                "--wheel-dir",
                str(own),
                _source(Path(staging)),
            ],
            "omnilab",
            wheelhouse,
        )
    built = sorted(own.glob("omnilab-*.whl"))
    if not built:
        raise ImageBuildError("pip wheel made no omnilab wheel")
    chosen = extras()
    requirement = f"{built[0]}[{','.join(chosen)}]" if chosen else str(built[0])
    _pip(
        [
            *pip,
            "download",
            *quiet,
            *index,
            "--only-binary=:all:",
            "--python-version",
            image_python(),
            "--implementation",
            "cp",
            *_platform_options(),
            "--dest",
            str(target),
            requirement,
        ],
        "omnilab's dependencies",
        wheelhouse,
    )
    for wheel in built:
        wheel.replace(target / wheel.name)
    own.rmdir()
    # pip evaluates markers with the host's Python; add what the image's needs besides
    # (redis wants async-timeout below 3.11.3), until nothing is missing.
    for _ in range(5):
        missing = _missing_for_image(target)
        if not missing:
            break
        _pip(
            [
                *pip,
                "download",
                *quiet,
                *index,
                "--only-binary=:all:",
                "--no-deps",
                "--python-version",
                image_python(),
                "--implementation",
                "cp",
                *_platform_options(),
                "--dest",
                str(target),
                *missing,
            ],
            ", ".join(missing),
            wheelhouse,
        )
    made = sorted(target.glob("*.whl"))
    size = sum(p.stat().st_size for p in made) / 2**20
    reporter.note(f"    wheels: {len(made)} wheels, {size:.0f} MiB")
    # Dependencies and omnilab in folders of their own: the recipes install them in two
    # layers, so a changed omnilab reuses the engine's cached dependency layer (and the
    # two images share it) instead of reinstalling some 100 wheels.
    for wheel in made:
        folder = target / ("own" if wheel.name.startswith("omnilab-") else "deps")
        folder.mkdir(exist_ok=True)
        wheel.replace(folder / wheel.name)
    return sorted(target.rglob("*.whl"))
