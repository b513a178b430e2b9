"""Secrets out of what is shown: every message, log line, plan and record that names a
server goes through here.

:func:`redact_url` masks the password of a URL (``postgresql://``, ``redis://``,
``rediss://``, ``unix://``, ``http(s)://``...), secrets passed as query parameters
(``?password=``, ``?api_key=``...) and the password of a libpq ``key=value`` string,
and leaves the rest readable: user, host, port, database, path, other parameters.

Connection strings come from users and environment files, so they are not always well
formed: a password with an unencoded ``@``, ``/``, ``?``, ``#`` or space would make a
strict URL parser put part of it in the host or the path, where it would be shown. The
rules here are made so that it never is; when a string is ambiguous, more is hidden
rather than less.
"""

from __future__ import annotations

import re

#: What replaces a secret.
MASK = "****"

#: Query parameters (and libpq keywords) whose value is a secret. Compared lowercased.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "sslpassword",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "auth",
        "auth_token",
        "api_key",
        "apikey",
        "api-key",
    }
)

_KEYS = "|".join(re.escape(k) for k in sorted(SECRET_KEYS, key=len, reverse=True))

# A secret query parameter's value runs to the next "&" (a "#" or "@" in it is part of
# the secret, not the start of a fragment or of a host); pieces after it without an "="
# are taken for more of it (an unencoded "&" in the secret).
_QUERY_SECRET = re.compile(rf"([?&;]\s*(?:{_KEYS})\s*=)[^&]*(?:&[^&=]*(?=&|$))*", re.IGNORECASE)

# libpq's key=value form: a value is 'quoted' (backslash escapes) or runs to the next
# space; words after it that are not "key=" are taken for more of it.
_CONNINFO_SECRET = re.compile(
    rf"(?<![\w-])((?:{_KEYS})\s*=\s*)(?:'(?:[^'\\]|\\.)*(?:'|$)|\S*)(?:\s+(?![\w-]+\s*=)\S+)*",
    re.IGNORECASE,
)

_CONNINFO = re.compile(r"^\s*[A-Za-z_][\w-]*\s*=")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$", re.DOTALL)


def redact(secret: str | None) -> str:
    """A secret as it may be shown: :data:`MASK` when there is one, "" when not."""
    return MASK if secret else ""


def redact_url(url: str) -> str:
    """``url`` with every secret in it replaced by :data:`MASK`.

    ``scheme://user:password@host:port/path?query``: the password (everything between
    the first ``:`` of the user part and the last ``@``) and the values of secret query
    parameters are masked; the host is lowercased (as URL parsers give it), the rest is
    kept as written. A URL without a password (none, or an empty one) keeps its user
    part as is. A string without ``scheme://`` is taken for libpq's ``key=value`` form
    when it has an ``=``, and for ``user:password@host`` when it has an ``@``.
    """
    match = _SCHEME.match(url)
    if match is None:
        if _CONNINFO.match(url):
            return _CONNINFO_SECRET.sub(rf"\1{MASK}", url)
        scheme, rest = "", url
    else:
        scheme, rest = match.groups()
    rest = _QUERY_SECRET.sub(rf"\1{MASK}", rest)
    userinfo, at, tail = rest.rpartition("@")
    if not at:
        return scheme + rest
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return scheme + rest
    return f"{scheme}{user}:{MASK}@{_lower_host(tail)}"


def _lower_host(tail: str) -> str:
    """``host:port/rest`` with the host lowercased (hosts are case-insensitive; parsers
    lowercase them, and recorded targets were written that way)."""
    end = len(tail)
    for sep in "/?#":
        found = tail.find(sep)
        if found != -1:
            end = min(end, found)
    return tail[:end].lower() + tail[end:]
