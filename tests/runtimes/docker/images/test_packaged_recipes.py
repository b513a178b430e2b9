"""Every recipe `omnilab images build` uses travels in the wheel.

An installed wheel has no ``dockerfiles/`` folder of its own: ``recipes_dir()`` finds the
recipes under ``<prefix>/share/omnilab/dockerfiles``, where pyproject.toml's
``[tool.setuptools.data-files]`` puts them. A recipe folder missing from that table
builds from a checkout and fails from a wheel, so the table is checked against the
catalog here, with no wheel to build.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from omnilab.runtimes.docker.images import catalog
from tests.support import ROOT

SHARE = "share/omnilab/dockerfiles"


def _packaged() -> dict[str, set[Path]]:
    """The files each data-files folder installs, by that folder."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {
        target: {path for pattern in patterns for path in ROOT.glob(pattern) if path.is_file()}
        for target, patterns in table["data-files"].items()
    }


def test_every_recipe_of_the_image_catalog_is_installed_with_the_wheel() -> None:
    packaged = _packaged()
    missing = []
    for spec in catalog().values():
        if spec.is_base:
            continue  # made by debootstrap, from no recipe
        if spec.dockerfile is not None:
            if ROOT / "dockerfiles" / spec.dockerfile not in packaged.get(SHARE, set()):
                missing.append(f"{spec.name}: dockerfiles/{spec.dockerfile}")
            continue
        assert isinstance(spec.context, str), spec
        folder = ROOT / "dockerfiles" / spec.context
        files = {p for p in folder.rglob("*") if p.is_file()}
        assert files, f"{spec.name}: no recipe in {folder}"
        left_out = files - packaged.get(f"{SHARE}/{spec.context}", set())
        missing += [f"{spec.name}: {p.relative_to(ROOT)}" for p in sorted(left_out)]
    assert not missing, "not in [tool.setuptools.data-files]: " + ", ".join(missing)
