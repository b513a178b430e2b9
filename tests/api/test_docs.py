"""``/docs`` and ``/redoc`` on a host without internet: the pages and everything they load
come from omnilab's own server, with no API key, and nothing points elsewhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from tests.support.queue_helpers import Api


class _References(HTMLParser):
    """Every URL a page makes the browser load: src/href attributes, ReDoc's spec-url and
    the document Swagger UI's script is told to fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []  # (tag, url)
        self._script = False
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append((tag, value))
        self._script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if self._script and data.strip():
            self.scripts.append(data)


EXPECTED_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


def _fetch_all(client: httpx.Client, page: str) -> dict[str, httpx.Response]:
    response = client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    # Not a CDN, not Google Fonts, not Swagger's validator: nothing outside this server.
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), html
    parser = _References()
    parser.feed(html)
    urls = [url for _, url in parser.urls]
    urls += re.findall(r"url: '([^']+)'", "".join(parser.scripts))  # Swagger UI's document
    assert urls, html
    fetched = {}
    for url in urls:
        assert url.startswith("/"), f"{page} refers to {url}, not to this server"
        asset = client.get(url)
        assert asset.status_code == 200, f"{page}: {url} answered {asset.status_code}"
        suffix = "." + url.rsplit(".", 1)[-1]
        content_type = asset.headers["content-type"].split(";")[0]
        assert content_type in EXPECTED_TYPES[suffix], f"{url}: {content_type}"
        fetched[url] = asset
    return fetched


def test_swagger_ui_loads_everything_from_this_server(api: Api) -> None:
    with api.anonymous() as client:  # the docs need no key, as FastAPI's own did
        fetched = _fetch_all(client, "/docs")
    scripts = [r.text for url, r in fetched.items() if url.endswith(".js")]
    assert len(scripts) == 1 and "SwaggerUIBundle" in scripts[0]
    assert len(scripts[0]) > 500_000  # the whole bundle, not a stub
    assert any(url.endswith(".css") for url in fetched)
    document = fetched["/openapi.json"].json()
    assert "/v1/runs" in document["paths"]
    # The docs pages describe the API; they are not part of it.
    assert not {"/docs", "/redoc"} & set(document["paths"])


def test_redoc_loads_everything_from_this_server(api: Api) -> None:
    with api.anonymous() as client:
        fetched = _fetch_all(client, "/redoc")
    scripts = [r.text for url, r in fetched.items() if url.endswith(".js")]
    assert len(scripts) == 1 and "Redoc" in scripts[0] and len(scripts[0]) > 500_000
    assert "/v1/runs" in fetched["/openapi.json"].json()["paths"]


def test_the_api_itself_still_needs_a_key(api: Api) -> None:
    with api.anonymous() as client:
        assert client.get("/v1/runs").status_code == 401


@pytest.mark.parametrize("path", ["/static/docs/../../pyproject.toml", "/static/docs/nothing.js"])
def test_the_assets_folder_serves_nothing_else(api: Api, path: str) -> None:
    with api.anonymous() as client:
        assert client.get(path).status_code == 404
