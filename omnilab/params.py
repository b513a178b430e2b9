"""Turning ``-p key=value`` strings (or a ``params={...}`` dict) into validated Params."""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

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
    prefix = "-p " if from_cli else ""
    if from_cli:
        data = {k: _coerce_cli_value(model, k, v) for k, v in data.items()}
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(describe_error(exc, prefix=prefix)) from None
    _check_recordable(validated, prefix)
    return validated


def as_json(values: Params) -> dict[str, Any]:
    """``values`` as the run records them (JSON values; a non-finite float the model
    allows becomes ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``)."""
    data: dict[str, Any] = json.loads(values.model_dump_json())
    return data


def _allows_non_finite(model: type[Params], key: str) -> bool:
    """Whether ``key`` may hold NaN or an infinity: the model says so for all its
    floats, or the field for itself."""
    if model.model_config.get("allow_inf_nan") is not False:
        return True
    field = model.model_fields[key]
    return any(getattr(meta, "allow_inf_nan", None) is True for meta in field.metadata)


def _check_recordable(values: Params, prefix: str) -> None:
    """Refuse, before anything starts, what the run could not record: NaN or infinities
    where the model does not allow them (in a list, a dict or an ``Any`` field, which
    pydantic's own check for float fields does not reach), and NUL characters
    (PostgreSQL's jsonb refuses them)."""
    model = type(values)
    recorded = as_json(values)
    for key in model.model_fields:
        if not _allows_non_finite(model, key) and _has_non_finite(getattr(values, key)):
            raise ParamsError(f"{prefix}{key}: NaN and infinite numbers are not allowed")
        if "\\u0000" in json.dumps(recorded.get(key)):
            raise ParamsError(f"{prefix}{key}: NUL characters are not allowed")


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, BaseModel):
        return any(_has_non_finite(getattr(value, k)) for k in type(value).model_fields)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_non_finite(v) for v in value)
    return False
