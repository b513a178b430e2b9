"""The OpenAPI document, with every experiment's params schema in it.

``POST /v1/runs`` validates params in code (an unknown experiment is a 404, not a schema
mismatch), so the generated document would only say "an object". This replaces that
request body with one alternative per experiment of the folder, each with the JSON
Schema of its own pydantic ``Params`` model; the document is rebuilt when the folder
changes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from omnilab.api.models import RunRequest
from omnilab.catalog import Catalog

RUNS_PATH = "/v1/runs"


def _schema_name(experiment: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in experiment)


#: PostgreSQL's jsonb cannot store NUL, so params refuse it (queued_runs.jsonable_params);
#: the document says so, rather than promise strings it will answer 422 to.
NO_NUL = "^[^\\u0000]*$"


def _without_nul(schema: Any) -> None:
    """Give every free-form string of a JSON Schema a pattern that excludes NUL."""
    if isinstance(schema, list):
        for item in schema:
            _without_nul(item)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    is_string = kind == "string" or (isinstance(kind, list) and "string" in kind)
    if is_string and not {"pattern", "enum", "const", "format"} & schema.keys():
        schema["pattern"] = NO_NUL
    for value in schema.values():
        if isinstance(value, dict | list):
            _without_nul(value)


def experiment_bodies(catalog: Catalog, components: dict[str, Any]) -> list[dict[str, Any]]:
    """One request-body schema per experiment; their models go into ``components``."""
    bodies = []
    for entry in sorted(catalog, key=lambda e: e.name):
        prefix = _schema_name(entry.name)
        params = entry.cls.Params.model_json_schema(
            ref_template=f"#/components/schemas/{prefix}__{{model}}"
        )
        _without_nul(params)
        for name, definition in params.pop("$defs", {}).items():
            components[f"{prefix}__{name}"] = definition
        params["title"] = f"{entry.name} params"
        components[f"{prefix}Params"] = params
        body_name = f"{prefix}RunRequest"
        components[body_name] = {
            "title": f"Run {entry.name}",
            "type": "object",
            "properties": {
                "experiment": {"type": "string", "const": entry.name},
                "params": {"$ref": f"#/components/schemas/{prefix}Params"},
                "retries": {"$ref": "#/components/schemas/RunRequest/properties/retries"},
                "name": {"$ref": "#/components/schemas/RunRequest/properties/name"},
                "tags": {"$ref": "#/components/schemas/RunRequest/properties/tags"},
            },
            "required": ["experiment"],
            "additionalProperties": False,
        }
        bodies.append({"$ref": f"#/components/schemas/{body_name}"})
    return bodies


def install(app: FastAPI, catalog: Catalog) -> None:
    built_for = -1

    def openapi() -> dict[str, Any]:
        nonlocal built_for
        catalog.refresh()
        if app.openapi_schema is not None and built_for == catalog.generation:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # The route reads its own body (routes/submit.py), so FastAPI did not add the
        # model its documented body refers to.
        components.setdefault(
            "RunRequest", RunRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        bodies = experiment_bodies(catalog, components)
        operation = schema["paths"][RUNS_PATH]["post"]
        content = operation["requestBody"]["content"]["application/json"]
        if bodies:
            content["schema"] = {
                "oneOf": bodies,
                "discriminator": {
                    "propertyName": "experiment",
                    "mapping": {
                        e.name: f"#/components/schemas/{_schema_name(e.name)}RunRequest"
                        for e in catalog
                    },
                },
            }
        app.openapi_schema = schema
        built_for = catalog.generation
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
