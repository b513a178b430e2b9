"""Static checks of generated code: does it parse, what does a linter say about it.

The linter is ruff (a dependency of omnilab), run with ``--isolated`` and a fixed rule
set so the user's own project configuration cannot change a run's scores: pyflakes'
rules (undefined names, unused imports...) and syntax errors. Findings are reported and
counted, not failing: whether the code works is for its tests to say.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

LINT_RULES = "E9,F"


@dataclass
class SyntaxCheck:
    ok: bool
    error: str | None = None


@dataclass
class LintReport:
    tool: str | None
    issues: list[dict[str, object]] = field(default_factory=list)
    #: Why linting did not happen (no linter found, linter failed).
    skipped: str | None = None

    @property
    def count(self) -> int:
        return len(self.issues)


def check_syntax(source: str, filename: str) -> SyntaxCheck:
    try:
        ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return SyntaxCheck(False, f"line {exc.lineno}: {exc.msg}")
    except ValueError as exc:  # null bytes
        return SyntaxCheck(False, str(exc))
    return SyntaxCheck(True)


@cache
def ruff_binary() -> tuple[str, str] | None:
    """(path, version) of ruff: the ``ruff`` package's binary, else one on PATH."""
    path: str | None = None
    try:
        from ruff.__main__ import find_ruff_bin

        path = str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        path = shutil.which("ruff")
    if path is None:
        return None
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return path, version


def lint(path: Path) -> LintReport:
    found = ruff_binary()
    if found is None:
        return LintReport(tool=None, skipped="ruff not found (pip install ruff)")
    binary, version = found
    try:
        out = subprocess.run(
            [
                binary,
                "check",
                "--isolated",
                "--no-cache",
                "--select",
                LINT_RULES,
                "--output-format",
                "json",
                "--exit-zero",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return LintReport(tool=version, skipped=f"ruff failed: {exc}")
    issues = [
        {
            "code": item.get("code") or "syntax",
            "message": item.get("message"),
            "line": (item.get("location") or {}).get("row"),
        }
        for item in json.loads(out or "[]")
    ]
    return LintReport(tool=version, issues=issues)
