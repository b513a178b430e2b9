"""Who is looking: sign-in with an API key, the session cookie, CSRF tokens, forms.

The session cookie is signed (itsdangerous) and holds the key's id and the session's
CSRF token, never the key itself; every page asks the store whether that key is still
active, so revoking a key ends its sessions at once. The cookie is HttpOnly,
SameSite=Strict, expires after ``OMNILAB_WEB_SESSION`` seconds, and is Secure when the
server is reached over HTTPS. Before sign-in, a second short-lived cookie carries the
login form's own CSRF token.

Scopes are the API's: ``read`` to see, ``run`` to queue and cancel, ``promote`` to plan,
promote and roll back. ``omnilab ui`` has no sign-in: it is local and read-only.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "omnilab_session"
LOGIN_COOKIE = "omnilab_login"
LOGIN_COOKIE_S = 600
#: The hidden field of every form that changes something. Params can never be named so:
#: pydantic fields cannot start with an underscore.
CSRF_FIELD = "_csrf"


class WebError(Exception):
    """A page that answers with an error: its status, a title and one line saying why."""

    def __init__(self, status: int, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title or {
            400: "Bad request",
            403: "Not allowed",
            404: "Not found",
            409: "Refused",
            502: "Failed",
            503: "Unavailable",
        }.get(status, "Error")


class SignInNeeded(Exception):
    """No valid session: the page redirects to the sign-in form."""


@dataclass
class Viewer:
    """The key a page is shown to (its name and scopes), and the session's CSRF token."""

    key_id: str | None
    name: str
    scopes: list[str]
    csrf: str = ""
    #: ``omnilab ui``: local, read-only, no sign-in.
    local: bool = False

    def can(self, scope: str) -> bool:
        return not self.local and scope in self.scopes


@dataclass
class Sessions:
    """Signs and reads the cookies; the secret is the setting or random per start."""

    secret: str | None
    max_age: float
    random_secret: bool = field(init=False)

    def __post_init__(self) -> None:
        self.random_secret = not self.secret
        key = self.secret or secrets.token_urlsafe(32)
        self._session = URLSafeTimedSerializer(key, salt="omnilab.web.session")
        self._login = URLSafeTimedSerializer(key, salt="omnilab.web.login")

    def read(self, request: Request) -> dict[str, str] | None:
        """The session's content, or None (none, forged, expired)."""
        return _load(self._session, request.cookies.get(COOKIE), self.max_age)

    def start(self, request: Request, response: Response, key_id: str) -> None:
        """A new session for ``key_id``, with a fresh CSRF token."""
        value = self._session.dumps({"k": key_id, "c": secrets.token_urlsafe(32)})
        _set(request, response, COOKIE, value, int(self.max_age))
        response.delete_cookie(LOGIN_COOKIE, path="/")

    def end(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def login_token(self, request: Request) -> tuple[str, str | None]:
        """The sign-in form's CSRF token: the one its cookie holds, else a new one and the
        cookie's new value (for :meth:`set_login`)."""
        data = _load(self._login, request.cookies.get(LOGIN_COOKIE), LOGIN_COOKIE_S)
        if data is not None:
            return data["c"], None
        token = secrets.token_urlsafe(32)
        return token, self._login.dumps({"c": token})

    def set_login(self, request: Request, response: Response, value: str) -> None:
        _set(request, response, LOGIN_COOKIE, value, LOGIN_COOKIE_S)

    def login_token_ok(self, request: Request, given: str) -> bool:
        data = _load(self._login, request.cookies.get(LOGIN_COOKIE), LOGIN_COOKIE_S)
        return data is not None and bool(given) and hmac.compare_digest(data["c"], given)


def _load(
    serializer: URLSafeTimedSerializer, value: str | None, max_age: float
) -> dict[str, str] | None:
    if not value or len(value) > 4096:
        return None
    try:
        data = serializer.loads(value, max_age=int(max_age))
    except BadSignature:  # also SignatureExpired
        return None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return None
    return data


def _set(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def csrf_ok(viewer: Viewer, form: dict[str, list[str]]) -> bool:
    given = (form.get(CSRF_FIELD) or [""])[-1]
    return bool(viewer.csrf) and bool(given) and hmac.compare_digest(viewer.csrf, given)


async def read_form(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (what the pages' forms send), each
    name with its values in order. The body's size is capped by the API's body limit."""
    raw = await request.body()
    if not raw:
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise WebError(400, "send the form as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebError(400, f"the form could not be read: {exc}") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def first(form: dict[str, list[str]], name: str, default: str = "") -> str:
    values = form.get(name)
    return values[-1] if values else default


def safe_next(target: Any) -> str:
    """Where to go after sign-in: a path on this site only (no ``//host`` or scheme)."""
    if (
        isinstance(target, str)
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and len(target) < 2000
        and not any(c in target for c in "\r\n\t")
    ):
        return target
    return "/"
