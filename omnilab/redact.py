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

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote, unquote_plus

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


# -- secrets inside other text: errors, tracebacks ---------------------------------------

#: What parsers cut a connection string at: a password holding one of these unencoded
#: may reach a message in pieces (``p@ss`` read as password ``p`` and host ``ss@...``).
_CUTS = r"""@:/?#&=\[\]\s%;,'"()<>{}|\\"""
_PIECES = re.compile(f"[{_CUTS}]+")
_TOKENS = re.compile(f"([{_CUTS}]+)")
#: Pieces at least this long are masked wherever they appear; shorter ones only where
#: they stand alone between cuts (so "ss" of "p@ss" goes, the "ss" of "address" stays).
#: Parsers cut at the cut characters, so a piece reaches a message between them: the
#: second rule finds it; the first is a backstop that must not eat ordinary words.
_LONG_PIECE = 8
#: Characters a URL's password must hold percent-encoded to be read whole by every
#: client (libpq cuts at the first "@", urllib at "/", "?" and "#" ...).
_MUST_ENCODE = {
    "@": "%40",
    "/": "%2F",
    "?": "%3F",
    "#": "%23",
    " ": "%20",
    "[": "%5B",
    "]": "%5D",
}


def secrets_of(url: str) -> list[str]:
    """Every secret in a connection string, as written: the URL's password (read as
    :func:`redact_url` reads it), secret query parameters, libpq's ``password=``."""
    found: list[str] = []
    match = _SCHEME.match(url)
    if match is None and _CONNINFO.match(url):
        for secret in _CONNINFO_SECRET.finditer(url):
            value = secret.group(0)[len(secret.group(1)) :]
            found.append(value)
            if value.startswith("'"):
                found.append(re.sub(r"\\(.)", r"\1", value.strip("'")))
        return [s for s in found if s]
    rest = match.group(2) if match else url
    for secret in _QUERY_SECRET.finditer(rest):
        found.append(secret.group(0)[len(secret.group(1)) :])
    userinfo, at, _ = _QUERY_SECRET.sub("", rest).rpartition("@")
    if at:
        found.append(userinfo.partition(":")[2])
    return [s for s in found if s]


def _variants(secret: str) -> set[str]:
    """A secret as parsers may show it: as written, percent-decoded, form-decoded."""
    return {v for v in (secret, unquote(secret), unquote_plus(secret)) if v}


#: What a URL quoter leaves as it is in a URL's parts (urllib3 re-encodes what it parsed
#: this way): a secret may come out in this form too.
_URL_SAFE = "!$&'()*+,;=:@/?#[]~-._"


def _encoded(secret: str) -> set[str]:
    """A secret as a URL quoter writes it (``%C3%A4`` for ``ä``), in the forms that differ
    from it as written: a parser that re-encodes what it read, or a message quoting a
    URL built again, shows it so."""
    forms = {quote(secret, safe=""), quote_plus(secret), quote(secret, safe=_URL_SAFE)}
    return {f for f in forms if f and f != secret}


def redact_text(text: str, *urls: str | None, secrets: Iterable[str] = ()) -> str:
    """``text`` (an error message, a traceback) with the secrets of ``urls`` (and the bare
    ``secrets``) masked, and every connection string it quotes masked by
    :func:`redact_url`.

    A parser's message may quote the whole URL, the password alone, or pieces of a
    password it cut where it holds an unencoded ``@``, ``/``, space... So each secret is
    masked whole (as written and percent-decoded), then each of its pieces: long ones
    wherever they are, short ones where they stand alone.
    """
    whole: set[str] = {s for s in secrets if s}
    for url in urls:
        if url:
            for secret in secrets_of(url):
                whole |= _variants(secret)
    pieces = {p for s in whole for p in _PIECES.split(s) if p}
    # Percent-encoded, a secret or a piece of it is masked wherever it is, in either case
    # of hex digits: "%" is a cut, so the pieces rule below would not see it whole.
    encoded = {e for s in whole | pieces for e in _encoded(s)}
    for form in sorted(encoded, key=len)[::-1]:
        text = re.sub(re.escape(form), MASK, text, flags=re.IGNORECASE)
    for secret in sorted(whole | {p for p in pieces if len(p) >= _LONG_PIECE}, key=len)[::-1]:
        text = text.replace(secret, MASK)
    if pieces:
        parts = _TOKENS.split(text)
        text = "".join(MASK if i % 2 == 0 and p in pieces else p for i, p in enumerate(parts))
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _TEXT_SECRET.sub(rf"\1{MASK}", text)


#: Variables whose value is a secret by their name alone (``AWS_ACCESS_KEY_ID`` among
#: them: an object store names the key it refuses, and the pair is shown as one).
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY", re.IGNORECASE)


def redact_environment(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with the secrets this process was configured with masked: those of every
    connection string among the environment's values, and the values of variables named
    as secrets (``*_PASSWORD``, ``*_API_KEY``...). The last resort for text that nothing
    more precise covers, such as a traceback of omnilab's own failure."""
    env = os.environ if environ is None else environ
    urls = [v for v in env.values() if _SCHEME.match(v) or _CONNINFO.match(v)]
    named = [v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 4]
    return redact_text(text, *urls, secrets=named)


#: A URL quoted in a message: up to a space, a quote or a closing bracket, and not
#: the punctuation after it.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>)\]]*[^\s'\"<>)\]:,.;]")
#: ``password=value`` in free text (a libpq string quoted in a message): the value is
#: one word or a quoted string. Not after ``?``/``&``: a URL's, masked already.
_TEXT_SECRET = re.compile(
    rf"(?<![\w?&;-])((?:{_KEYS})\s*=\s*)(?:'(?:[^'\\]|\\.)*(?:'|$)|[^\s'\"]+)", re.IGNORECASE
)


def encoding_hint(url: str) -> str:
    """A note for an error about ``url``: which characters of its password must be
    percent-encoded for every client to read it whole ("" when none)."""
    if _SCHEME.match(url) is None:
        return ""
    bad = sorted({c for s in secrets_of(url) for c in s if c in _MUST_ENCODE or c.isspace()})
    if not bad:
        return ""
    shown = ", ".join(f"{c!r} as {_MUST_ENCODE.get(c, '%20')}" for c in bad)
    return f" (percent-encode its password's {shown})"


def connection_cause(message: str, fallback: str = "no answer") -> str:
    """The line of a client's connection error that says why: the last one not indented.
    libpq puts a hint under its cause, indented ("Is the server running on that host and
    accepting TCP/IP connections?"), which reads the same for a refused port, a dropped
    packet and a wrong host; the cause above it ("Connection refused") tells them apart."""
    lines = [line for line in message.splitlines() if line.strip()]
    causes = [line for line in lines if not line[:1].isspace()] or lines
    return causes[-1].strip() if causes else fallback
