"""Templates, the security headers every page carries, and the route class that adds them.

Templates are autoescaped: whatever a run holds (params, summaries, log lines, error
text, artifact names, experiment docstrings) reaches a page as text. The few helpers
that return HTML (the notebook's cells and tables, the SVG charts) escape what they hold
themselves; they are marked safe in one place each, here.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from markupsafe import Markup

from omnilab.notebook import html as nb
from omnilab.notebook.cards import timing_bar
from omnilab.version import __version__
from omnilab.web.session import CSRF_FIELD, SignInNeeded, Viewer, WebError

#: Scripts only from omnilab's own static files (no inline script can run); styles may be
#: inline attributes (the charts' colours, the timing bar's widths); nothing may frame a page.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def secure(response: Response, *, cache: bool = False) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not cache:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _safe(helper: Callable[..., str]) -> Callable[..., Markup]:
    """A notebook helper that returns escaped HTML, as a filter whose output is kept."""

    def apply(*args: Any) -> Markup:
        return Markup(helper(*args))  # the helper escapes what it holds

    return apply


def _when(value: datetime | None) -> str:
    return nb.when(value)


def _short(value: Any, width: int = 80) -> str:
    return nb.compact(value, width)


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("omnilab.web", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    cell=_safe(nb.cell),
    kv=_safe(nb.kv_table),
    timing_bar=_safe(timing_bar),
    svg=lambda svg: Markup(svg),  # omnilab's charts escape their text
    number=nb.number,
    seconds=nb.seconds,
    when=_when,
    size=nb.size,
    short=_short,
    urlpath=lambda value: quote(str(value)),
)
ENV.globals.update(version=__version__, csrf_field=CSRF_FIELD)


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A page from ``template``, with the viewer and the security headers."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    html = ENV.get_template(template).render(
        viewer=viewer,
        path=request.url.path,
        flash=context.pop("flash", []),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str, title: str | None = None) -> Response:
    error = WebError(status, message, title)
    return secure(page(request, "error.html", status=status, error=error))


def query_with(pairs: Iterable[tuple[str, str]], **changes: str | None) -> str:
    """The query string ``pairs`` with ``changes`` applied (None removes), as ``?...``."""
    names = {k.replace("__", "."): v for k, v in changes.items()}
    kept = [(k, v) for k, v in pairs if k not in names]
    kept += [(k, v) for k, v in names.items() if v is not None]
    return "?" + urlencode(kept) if kept else "?"


ENV.globals.update(query_with=query_with)


class WebRoute(APIRoute):
    """A page's route: what it raises becomes an HTML page (a :class:`WebError`, an
    HTTPException of the shared code paths), a missing session a redirect to sign-in,
    and every response gets the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInNeeded:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse("/login" + query_with([], next=target), status_code=303)
            except WebError as exc:
                response = page(request, "error.html", status=exc.status, error=exc)
            except HTTPException as exc:
                response = page(
                    request,
                    "error.html",
                    status=exc.status_code,
                    error=WebError(exc.status_code, str(exc.detail)),
                )
            return secure(response)

        return answer
