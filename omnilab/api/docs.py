"""``/docs`` (Swagger UI) and ``/redoc`` served from the package, not from a CDN.

FastAPI's own pages load their scripts from jsDelivr and ReDoc's fonts from Google: on an
air-gapped host (the hosts omnilab is made for) they are blank. The assets come from the
``fastapi-offline`` wheel (Swagger UI's bundle and stylesheet, ReDoc's standalone script,
a favicon), mounted under :data:`STATIC_URL`. Like the OpenAPI document, these pages
need no API key: they describe the API, they do not call it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/static/docs"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

#: Swagger UI would otherwise send the document to validator.swagger.io for a badge.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def assets_dir() -> Path:
    """The folder of the wheel's assets (a real folder: the wheel is installed unzipped)."""
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Add the two pages and their assets to an app made with ``docs_url=None,
    redoc_url=None``."""
    app.mount(STATIC_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    def root(request: Request) -> str:
        # Behind a proxy that strips a prefix, links must carry it back.
        return str(request.scope.get("root_path", ""))

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{base}{STATIC_URL}/favicon.png",
            oauth2_redirect_url=base + OAUTH2_REDIRECT_URL,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
