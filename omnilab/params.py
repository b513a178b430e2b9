"""Turning ``-p key=value`` strings (or a ``params={...}`` dict) into validated Params."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from omnilab.errors import ParamsError
from omnilab.experiment import Experiment, Params


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["n=10", "name=x"]`` -> ``{"n": "10", "name": "x"}``; malformed items are errors."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamsError(f"-p {item!r}: expected key=value")
        if key in parsed:
            raise ParamsError(f"-p {key}: given twice")
        parsed[key] = value
    return parsed


def _wants_text(annotation: Any) -> bool:
    """Whether a field takes a plain string, so a CLI value must not be JSON-decoded."""
    if annotation is str:
        return True
    args = typing.get_args(annotation)
    return bool(args) and str in args and all(a in (str, type(None)) for a in args)


def _coerce_cli_value(model: type[Params], key: str, raw: str) -> Any:
    """CLI values are text. Lists, dicts and JSON literals are decoded; pydantic does the
    rest (``"10"`` -> 10 for an int field), so errors come from one place with one style."""
    field = model.model_fields.get(key)
    if field is None or _wants_text(field.annotation):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def describe_error(error: ValidationError, *, prefix: str = "-p ") -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "params"
        if item["type"] == "extra_forbidden":
            parts.append(f"{prefix}{key}: unknown parameter")
        else:
            got = item.get("input")
            shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
            parts.append(f"{prefix}{key}: {item['msg']}{shown}")
    return "; ".join(parts)


def validate(
    experiment: type[Experiment],
    values: Mapping[str, Any] | Params | None = None,
    *,
    from_cli: bool = False,
) -> Params:
    """The experiment's Params instance, or ParamsError naming each bad field."""
    model = experiment.Params
    if isinstance(values, model):
        return values
    if isinstance(values, Params):
        values = values.model_dump()
    data = dict(values or {})
    known = ", ".join(model.model_fields) or "none"
    unknown = [k for k in data if k not in model.model_fields]
    if unknown:
        prefix = "-p " if from_cli else ""
        raise ParamsError(
            "; ".join(f"{prefix}{k}: unknown parameter" for k in unknown)
            + f" ({experiment.experiment_name()} takes: {known})"
        )
    if from_cli:
        data = {k: _coerce_cli_value(model, k, v) for k, v in data.items()}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(describe_error(exc, prefix="-p " if from_cli else "")) from None
