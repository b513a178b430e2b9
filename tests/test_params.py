"""Parameters: validated by the experiment's pydantic model, from the CLI or Python."""

from __future__ import annotations

import pytest

from omnilab.errors import ParamsError
from omnilab.loader import load
from omnilab.params import parse_assignments, validate
from tests.support import EXPERIMENTS

Second = load(f"{EXPERIMENTS / 'several.py'}:Second").cls


def test_cli_strings_become_typed_values() -> None:
    values = parse_assignments(["label=123", "sizes=[3, 4]", "ratio=2", "flag=true"])
    params = validate(Second, values, from_cli=True)
    assert params.label == "123"  # a str field keeps the text, not the number
    assert params.sizes == [3, 4]
    assert params.ratio == 2.0
    assert params.flag is True


def test_defaults_apply() -> None:
    assert validate(Second, {}).model_dump() == {
        "label": "x",
        "sizes": [1, 2],
        "ratio": 0.5,
        "flag": False,
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["nope=1"], "-p nope: unknown parameter"),
        (["ratio=abc"], "-p ratio: Input should be a valid number"),
        (['sizes=[1, "x"]'], "-p sizes.1: Input should be a valid integer"),
        (["flag=maybe"], "-p flag: Input should be a valid boolean"),
    ],
)
def test_bad_values_name_each_field(items: list[str], message: str) -> None:
    with pytest.raises(ParamsError) as info:
        validate(Second, parse_assignments(items), from_cli=True)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_unknown_names_list_what_is_accepted() -> None:
    with pytest.raises(ParamsError, match=r"Second takes: label, sizes, ratio, flag"):
        validate(Second, {"lable": "typo"})


@pytest.mark.parametrize(
    ("item", "message"), [("novalue", "expected key=value"), ("=3", "expected key=value")]
)
def test_malformed_assignments(item: str, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_assignments([item])


def test_repeated_assignment_is_refused() -> None:
    with pytest.raises(ParamsError, match="given twice"):
        parse_assignments(["a=1", "a=2"])
