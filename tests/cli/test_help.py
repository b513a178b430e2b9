"""Every command's ``--help`` teaches: grouped commands, shell completion, and at least
one example per command that parses against the command itself (and, where cheap and
safe, runs); every file an example names exists."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from omnilab.cli.main import PANELS, app
from tests.support import ROOT, run_cli

ROOT_COMMAND = typer.main.get_command(app)


# typer's own copy of click: its commands and errors, duck-typed.
Command = Any


def _is_group(command: Command) -> bool:
    return hasattr(command, "commands")


def _leaves(
    command: Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Command]]:
    if _is_group(command):
        for name, sub in command.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path, command


COMMANDS = dict(_leaves(ROOT_COMMAND))
IDS = [" ".join(path) for path in COMMANDS]


def examples(command: Command) -> list[str]:
    """The ``omnilab ...`` commands of a help's Example(s) section, one per command
    (a line continued with a backslash joined; ``a ; b``, pipes and ``$(...)`` split)."""
    text = command.help or ""
    match = re.search(r"^\s*Examples?:(.*)", text, re.S | re.M)
    if not match:
        return []
    body = re.sub(r"\\\s*\n\s*", " ", match.group(1))
    found = []
    for line in body.splitlines():
        line = line.split("  # ")[0]
        for segment in re.findall(r"\bomnilab\s[^;|)&<>]*", line):
            found.append(segment.strip().strip('"'))
    return found


def test_at_least_23_commands_are_walked() -> None:
    assert len(COMMANDS) >= 23, sorted(IDS)


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_every_command_has_an_example_that_parses(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    found = examples(command)
    assert found, f"`omnilab {' '.join(path)} --help` has no Example section"
    mine = [e for e in found if shlex.split(e)[1 : 1 + len(path)] == list(path)]
    assert mine, f"none of its examples runs `omnilab {' '.join(path)}`: {found}"
    for example in found:
        _parses(example)


def _parses(example: str) -> None:
    """``omnilab A B --opt x`` goes through click's parser for command ``A B`` (every
    option and argument exists, types and choices hold) without running it."""
    words = shlex.split(example)[1:]
    command = ROOT_COMMAND
    parent = ROOT_COMMAND.make_context("omnilab", [], resilient_parsing=True)
    while _is_group(command):
        name, words = words[0], words[1:]
        sub = command.get_command(parent, name)
        assert sub is not None, f"{example}: no command {name!r}"
        command = sub
    try:
        command.make_context(command.name or "", list(words), parent=parent)
    except Exception as exc:
        if not hasattr(exc, "format_message"):  # not a parser's error
            raise
        pytest.fail(f"{example}: {exc.format_message()}")
    for word in words:
        file = word.split(":")[0]
        if re.fullmatch(r"(experiments|compose|dockerfiles|tests)/[\w./-]+", file):
            assert (ROOT / file).exists(), f"{example}: {file} does not exist"
            if ":" in word:
                assert f"class {word.split(':')[1]}(" in (ROOT / file).read_text(), example


def test_run_examples_name_real_experiments_and_params() -> None:
    """`omnilab run` examples: the file and class load, the -p values validate."""
    from omnilab.loader import resolve
    from omnilab.params import parse_assignments, validate

    for example in examples(COMMANDS[("run",)]):
        words = shlex.split(example)[2:]
        loaded = resolve(str(ROOT / words[0]))
        given = [words[i + 1] for i, w in enumerate(words) if w in ("-p", "--param")]
        validate(loaded.cls, parse_assignments(given), from_cli=True)


#: Examples cheap and safe to run for real here (they read, start nothing).
RUNNABLE = [
    "omnilab runs ls",
    "omnilab runs ls --json",
    "omnilab runs ls --experiment Hello --status failed",
    "omnilab codegen templates",
    "omnilab codegen templates solve",
    "omnilab stack ls",
    "omnilab promotions ls",
    "omnilab gc --dry-run",
]


@pytest.mark.parametrize("example", RUNNABLE)
def test_cheap_examples_run(example: str, workdir: Path) -> None:
    everywhere = [e for path in COMMANDS for e in examples(COMMANDS[path])]
    assert example in everywhere, f"{example!r} is no longer an example of any command"
    result = run_cli(*shlex.split(example)[1:], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_top_level_commands_are_grouped_run_first() -> None:
    result = run_cli("--help", env={"COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    headings = [h for h in PANELS if f"─ {h} " in out]
    assert headings[:2] == ["Run experiments", "Stacks"], out
    positions = [out.index(f"─ {h} ") for h in headings]
    assert positions == sorted(positions)
    commands = re.findall(r"^│ ([a-z][\w-]*) ", out, re.M)
    assert commands[:2] == ["run", "runs"], commands
    # Every top-level command sits under one of the headings.
    assert "─ Commands " not in out and "─ Other " not in out
    assert set(commands) >= set(ROOT_COMMAND.commands)


def test_shell_completion_is_available() -> None:
    script = run_cli("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "complete " in script.stdout and "_OMNILAB_COMPLETE" in script.stdout
    completed = run_cli(
        env={"_OMNILAB_COMPLETE": "complete_bash", "COMP_WORDS": "omnilab ru", "COMP_CWORD": "1"}
    )
    assert completed.stdout.split() == ["run", "runs"]
    options = run_cli(
        env={
            "_OMNILAB_COMPLETE": "complete_bash",
            "COMP_WORDS": "omnilab runs ls --ta",
            "COMP_CWORD": "3",
        }
    )
    assert options.stdout.split() == ["--tag"]


def test_examples_parse_check_catches_a_wrong_example() -> None:
    """The check above can fail: an unknown option or a missing file is caught."""
    with pytest.raises(pytest.fail.Exception, match="No such option"):
        _parses("omnilab runs ls --colour red")
    with pytest.raises(AssertionError, match="does not exist"):
        _parses("omnilab run experiments/many.py:RagDemo --keep")


def test_json_of_examples_is_json(workdir: Path) -> None:
    result = run_cli("runs", "ls", "--json")
    assert json.loads(result.stdout) is not None
