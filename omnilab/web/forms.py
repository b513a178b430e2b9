"""An experiment's queue form, made from its params' JSON Schema, and the form's text
turned back into typed values for the API's own validation (:func:`valid_params`).

A form sends text; the API takes JSON values and validates them strictly. So each field
is read as its schema's type says (a whole number, a number, true/false, one of a list,
JSON for lists and objects), and the experiment's pydantic model then judges the values
exactly as it judges ``POST /v1/runs``; its errors are shown next to their fields.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass
class FormField:
    name: str
    kind: str  # integer, number, string, boolean, choice, json
    title: str
    description: str = ""
    default: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    #: What the user typed (shown again with the error), and the error.
    value: str = ""
    error: str = ""
    _choice_values: tuple[Any, ...] = ()

    @property
    def shown(self) -> str:
        return self.value if self.value else self.default


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found = root.get("$defs", {}).get(ref.rsplit("/", 1)[1], {})
        return {**found, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def fields_of(schema: dict[str, Any]) -> list[FormField]:
    """One field per property of a params model's JSON Schema, in its order."""
    required = set(schema.get("required", ()))
    fields = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = _resolve(raw, schema)
        options = [_resolve(o, schema) for o in prop.get("anyOf", ()) if isinstance(o, dict)]
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1:
            prop = {**real[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
        kind = prop.get("type")
        field = FormField(
            name=name,
            kind="json",
            title=str(prop.get("title") or name),
            description=str(prop.get("description") or ""),
            required=name in required,
            minimum=prop.get("minimum"),
            maximum=prop.get("maximum"),
        )
        if "enum" in prop:
            field.kind = "choice"
            field._choice_values = tuple(prop["enum"])
            field.choices = tuple(_text(v) for v in prop["enum"])
        elif "const" in prop:
            field.kind = "choice"
            field._choice_values = (prop["const"],)
            field.choices = (_text(prop["const"]),)
        elif kind in ("integer", "number", "string", "boolean"):
            field.kind = kind
        if "default" in prop:
            default = prop["default"]
            field.default = "" if default is None else _text(default)
        fields.append(field)
    return fields


def values_of(fields: list[FormField], form: dict[str, list[str]]) -> dict[str, Any]:
    """The params the form gives (empty fields left out: their defaults apply); a field
    that cannot be read as its type gets its ``error`` and is left out."""
    values: dict[str, Any] = {}
    for field in fields:
        given = form.get(field.name)
        text = given[-1] if given else ""
        field.value = text
        if text == "" and field.kind != "string":
            if field.required:
                field.error = "required"
            continue
        if text == "" and not field.required:
            continue
        try:
            values[field.name] = _parse(field, text)
        except ValueError as exc:
            field.error = str(exc)
    return values


def _parse(field: FormField, text: str) -> Any:
    if field.kind == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("give a whole number") from None
    if field.kind == "number":
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError("give a number") from None
        if not math.isfinite(number):
            raise ValueError("give a finite number")
        return number
    if field.kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError("choose true or false")
        return text == "true"
    if field.kind == "choice":
        for shown, value in zip(field.choices, field._choice_values, strict=True):
            if text == shown:
                return value
        raise ValueError(f"choose one of {', '.join(field.choices)}")
    if field.kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(
                'give a JSON value (a list: ["a", "b"]; an object: {"k": 1})'
            ) from None
    return text


def attach_errors(fields: list[FormField], problems: list[dict[str, Any]]) -> list[str]:
    """The API's validation errors (``loc``: body, params, field...) put on their fields;
    those of no field come back as lines for the page."""
    by_name = {f.name: f for f in fields}
    rest = []
    for problem in problems:
        loc = [str(part) for part in problem.get("loc", ())]
        name = loc[2] if len(loc) > 2 else None
        message = str(problem.get("msg", "invalid"))
        if name in by_name and not by_name[name].error:
            where = ".".join(loc[3:])
            by_name[name].error = f"{where}: {message}" if where else message
        elif name in by_name:
            continue
        else:
            rest.append(f"{name}: {message}" if name else message)
    return rest
