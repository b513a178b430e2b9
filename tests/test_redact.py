"""One redaction for every URL, DSN and secret shown: the secret never comes out, the
address stays readable, however the string is (mis)written."""

from __future__ import annotations

import os
import signal
import subprocess
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnilab.redact import (
    MASK,
    encoding_hint,
    redact,
    redact_environment,
    redact_text,
    redact_url,
)
from tests.support import OMNILAB, run_cli

#: Passwords as people write them into URLs without encoding them.
AWKWARD = [
    "s3cretpw",
    "p@ssw0rd",
    "pa:ss:wd",
    "pa/ss/wd",
    "pa?ss=wd",
    "pa#sswd",
    "pa%40ss%2Fwd",
    "pass word here",
    "@:/?#% mix",
    "trailing@",
    "ends:with/",
]


def _readable(out: str, *parts: str) -> None:
    for part in parts:
        assert part in out, f"{part!r} should stay readable in {out!r}"


@pytest.mark.parametrize("password", AWKWARD)
@pytest.mark.parametrize(
    ("template", "readable"),
    [
        (
            "postgresql://app:{pw}@db.example.com:5432/prod",
            ["postgresql://", "app:", "db.example.com:5432/prod"],
        ),
        (
            "postgres://app:{pw}@10.0.0.7:6543/analytics?sslmode=require",
            ["10.0.0.7:6543/analytics", "sslmode=require"],
        ),
        ("redis://:{pw}@127.0.0.1:6380/3", ["redis://", "127.0.0.1:6380/3"]),
        ("redis://default:{pw}@cache.internal:6379/0", ["default:", "cache.internal:6379/0"]),
        ("rediss://user:{pw}@redis.example.com:6380/1", ["rediss://", "redis.example.com:6380/1"]),
        ("unix://:{pw}@/run/redis/redis.sock?db=2", ["unix://", "/run/redis/redis.sock", "db=2"]),
        ("http://admin:{pw}@localhost:6333/collections", ["localhost:6333/collections"]),
        ("https://bot:{pw}@qdrant.example.com:6334", ["https://", "qdrant.example.com:6334"]),
        ("app:{pw}@db.example.com:5432", ["db.example.com:5432"]),
    ],
)
def test_a_password_in_the_user_part_never_shows(
    template: str, readable: list[str], password: str
) -> None:
    url = template.format(pw=password)
    out = redact_url(url)
    assert password not in out
    assert MASK in out
    _readable(out, *readable)


@pytest.mark.parametrize("password", [p for p in AWKWARD if "&" not in p])
@pytest.mark.parametrize(
    ("template", "readable"),
    [
        ("redis://127.0.0.1:6379/0?password={pw}", ["127.0.0.1:6379/0"]),
        (
            "redis://cache:6379/0?db=4&password={pw}&ssl_cert_reqs=none",
            ["cache:6379/0", "db=4", "ssl_cert_reqs=none"],
        ),
        ("unix:///run/redis.sock?password={pw}&db=5", ["unix:///run/redis.sock", "db=5"]),
        ("unix:///run/redis.sock?db=5&password={pw}", ["unix:///run/redis.sock", "db=5"]),
        ("http://qdrant:6333?api_key={pw}", ["http://qdrant:6333"]),
        (
            "https://qdrant.example.com:6333/?timeout=5&API_KEY={pw}",
            ["qdrant.example.com:6333", "timeout=5"],
        ),
        (
            "postgresql:///prod?host=/var/run/postgresql&password={pw}",
            ["/prod", "host=/var/run/postgresql"],
        ),
        ("https://api.example.com/v1?token={pw}", ["api.example.com/v1"]),
    ],
)
def test_a_secret_query_parameter_never_shows(
    template: str, readable: list[str], password: str
) -> None:
    out = redact_url(template.format(pw=password))
    assert password not in out
    assert MASK in out
    _readable(out, *readable)


def test_a_secret_with_an_ampersand_in_a_query_parameter_is_hidden_whole() -> None:
    # "cd" has no "=": it is taken for more of the password, not for a parameter.
    out = redact_url("redis://cache:6379/0?password=ab&cd&db=4")
    assert out == f"redis://cache:6379/0?password={MASK}&db=4"


@pytest.mark.parametrize("password", ["s3cret", "p@ss", "has space", "it's", "a=b c"])
def test_libpq_key_value_strings(password: str) -> None:
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    for dsn in (
        f"host=db.example.com port=5432 dbname=prod user=app password={quoted}",
        f"password={quoted} host=db.example.com dbname=prod",
    ):
        out = redact_url(dsn)
        assert password not in out
        assert f"password={MASK}" in out
        _readable(out, "host=db.example.com", "dbname=prod")
    plain = redact_url("host=db dbname=prod password=s3cret sslmode=require")
    assert plain == f"host=db dbname=prod password={MASK} sslmode=require"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # What plans and promotion records have always held for these (they tell
        # production targets apart, so the form must not change).
        (
            "postgresql://app:pw@db.example.com:5432/prod",
            "postgresql://app:****@db.example.com:5432/prod",
        ),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:****@127.0.0.1:6379/0"),
        (
            "postgresql://app:pw@DB.Example.com/prod?sslmode=require",
            "postgresql://app:****@db.example.com/prod?sslmode=require",
        ),
        ("http://qdrant:pw@localhost:6333", "http://qdrant:****@localhost:6333"),
        # Nothing secret: left as written.
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("postgresql://app@db.example.com/prod", "postgresql://app@db.example.com/prod"),
        ("postgresql://app:@db/prod", "postgresql://app:@db/prod"),
        ("http://localhost:6333", "http://localhost:6333"),
        ("localhost:6379", "localhost:6379"),
        ("", ""),
    ],
)
def test_the_form_of_well_formed_urls(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_malformed_strings_never_raise_nor_leak() -> None:
    for url in (
        "redis://:pw@[::1",
        "postgresql://app:pw@host:notaport/db",
        "redis://:pw@@@host",
        "://:pw@host",
        "redis://:pw\n@host",
        "postgresql://app:pw@ho st/db name",
    ):
        out = redact_url(url)
        assert "pw" not in out, out


def test_a_bare_secret() -> None:
    assert redact("hunter2") == MASK
    assert redact("") == ""
    assert redact(None) == ""


# -- fuzzing: the URL forms each client library accepts ------------------------------------
#
# Passwords are drawn from "canary" letters that no template holds, mixed with every
# character a parser cuts at. Whatever a password holds, no canary may come out: not from
# redact_url, and not from redact_text over the messages the real parsers (redis-py,
# psycopg/libpq, urllib3 as qdrant-client uses it) give for that URL, nor over messages
# quoting what they parsed (a host that swallowed half a password).

CANARIES = "äöüéñçøåœæ"
CUTS = "@:/?#&=%[] ;,'\"+\\"
password_text = st.text(alphabet=CANARIES + CUTS, min_size=1, max_size=24).filter(
    lambda p: any(c in CANARIES for c in p)
)
hosts = st.sampled_from(["127.0.0.1", "db.example.com", "Cache-1.Internal", "[::1]", "localhost"])
ports = st.sampled_from(["", ":6379", ":5432", ":6333", ":1"])

#: Templates with {pw}, {host} and {port}: the forms the three client libraries accept.
USERINFO_FORMS = [
    # redis-py: redis://, rediss://, unix://, with or without a user, a db, parameters
    "redis://:{pw}@{host}{port}/0",
    "redis://default:{pw}@{host}{port}/3?socket_timeout=5",
    "rediss://user:{pw}@{host}{port}/1?ssl_cert_reqs=none",
    "unix://:{pw}@/run/redis/redis.sock?db=2",
    # psycopg (libpq URIs): postgresql://, postgres://, several hosts, parameters
    "postgresql://app:{pw}@{host}{port}/prod",
    "postgres://app:{pw}@{host}{port}/analytics?sslmode=require&application_name=x",
    "postgresql://app:{pw}@{host}:5432,replica.example.com:5433/prod",
    # qdrant-client: http(s) with credentials, a prefix; "host:port" without a scheme
    "http://qdrant:{pw}@{host}{port}/collections",
    "https://bot:{pw}@{host}{port}",
    "app:{pw}@{host}{port}",
]
#: Secrets as query parameters; "&" is left out of these passwords: an unencoded "&"
#: followed by "name=" is the next parameter for every parser, and for us.
QUERY_FORMS = [
    "redis://{host}{port}/0?password={pw}",
    "redis://{host}{port}/0?db=4&password={pw}&ssl_cert_reqs=none",
    "unix:///run/redis.sock?password={pw}&db=5",
    "postgresql://app@{host}{port}/prod?password={pw}",
    "postgresql:///prod?host=/var/run/postgresql&password={pw}",
    "http://{host}{port}?api_key={pw}",
]


#: The canaries as a URL quoter writes them (UTF-8, percent-encoded): a leak in that
#: form (a parser that re-encodes what it read, a message quoting it) is a leak too.
ENCODED_CANARIES = [quote(c, safe="").lower() for c in CANARIES]


def _no_canary(text: str) -> bool:
    """No canary, plain or percent-encoded (any case), anywhere in ``text``."""
    lowered = text.lower()
    return not any(c in text for c in CANARIES) and not any(e in lowered for e in ENCODED_CANARIES)


def _no_leak(text: str, secret: str) -> bool:
    """Neither the secret, nor its canaries, nor the secret in the forms a URL quoter
    writes it (``quote`` with nothing safe, ``quote_plus``), appear in ``text``."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    return _no_canary(text) and not any(form in text for form in forms)


def _parser_messages(url: str) -> list[str]:
    """What the real parsers say about ``url``: their error, or what they read from it
    (everything but the password), as an error message would quote it."""
    import psycopg.conninfo
    import redis.connection
    import urllib3.util

    said: list[str] = []
    for parse in (
        redis.connection.parse_url,
        psycopg.conninfo.conninfo_to_dict,
        lambda u: urllib3.util.parse_url(u)._asdict(),
    ):
        try:
            parsed = parse(url)
        except Exception as exc:  # what a caller would show: its message
            said.append(f"{type(exc).__name__}: {exc}")
            continue
        parsed = {k: v for k, v in parsed.items() if k not in ("password", "auth")}
        said.append(f"cannot connect to {parsed!r}")
        said.append(" ".join(f"{k}={v}" for k, v in parsed.items()))
        if isinstance(parsed.get("host"), str):
            said.append(f"failed to resolve host '{parsed['host']}'")
    return said


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    template=st.sampled_from(USERINFO_FORMS),
    password=password_text,
    host=hosts,
    port=ports,
)
def test_fuzz_userinfo_passwords_never_show(
    template: str, password: str, host: str, port: str
) -> None:
    url = template.format(pw=password, host=host, port=port)
    assert _no_leak(redact_url(url), password), redact_url(url)
    for message in _parser_messages(url):
        shown = redact_text(message, url)
        assert _no_leak(shown, password), (message, shown)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    template=st.sampled_from(QUERY_FORMS),
    password=password_text.filter(lambda p: "&" not in p),
    host=hosts,
    port=ports,
)
def test_fuzz_query_secrets_never_show(template: str, password: str, host: str, port: str) -> None:
    url = template.format(pw=password, host=host, port=port)
    assert _no_leak(redact_url(url), password), redact_url(url)
    for message in _parser_messages(url):
        shown = redact_text(message, url)
        assert _no_leak(shown, password), (message, shown)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(password=password_text, host=hosts)
def test_fuzz_libpq_key_value_strings(password: str, host: str) -> None:
    from psycopg.conninfo import make_conninfo

    # As psycopg itself writes one (quoting and escaping as libpq reads them).
    dsn = make_conninfo(host=host, port=5432, dbname="prod", user="app", password=password)
    assert _no_leak(redact_url(dsn), password), redact_url(dsn)
    assert "dbname=prod" in redact_url(dsn)
    for message in _parser_messages(dsn):
        assert _no_leak(redact_text(message, dsn), password), message


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(template=st.sampled_from(USERINFO_FORMS), password=password_text)
def test_fuzz_the_address_stays_readable(template: str, password: str) -> None:
    # Masking must not cost the reader the address: for a password without the
    # characters that move a URL's boundaries, all but the password is shown as written.
    clean = "".join(c for c in password if c not in "@/?#") or "ä"
    url = template.format(pw=clean, host="db.example.com", port=":6543")
    assert redact_url(url) == template.format(pw=MASK, host="db.example.com", port=":6543")


def test_redact_text_masks_the_pieces_a_parser_cut() -> None:
    url = "postgresql://app:p@ssw0rdXYZ@127.0.0.1:1/db"
    # libpq cuts at the first "@": the rest of the password became the host.
    message = "failed to resolve host 'ssw0rdXYZ@127.0.0.1': Name or service not known"
    assert redact_text(message, url) == (
        f"failed to resolve host '{MASK}@127.0.0.1': Name or service not known"
    )
    spaced = "postgresql://app:pass word here@h/db"
    shown = redact_text('unexpected spaces found in "pass word here@h"', spaced)
    assert not any(piece in shown for piece in ("pass", "word", "here")), shown
    # Ordinary words that merely contain a short piece are left alone.
    assert redact_text("no address given", "redis://:a@ss@h/0") == "no address given"
    assert encoding_hint(spaced) == " (percent-encode its password's ' ' as %20)"
    assert encoding_hint("postgresql://app:pw@h/db") == ""


def test_redact_environment_masks_configured_secrets() -> None:
    env = {
        "OMNILAB_TRACKING_URL": "postgresql://app:tr4ck!ng@db/x",
        "QDRANT_API_KEY": "k3y-value-42",
        "AWS_ACCESS_KEY_ID": "GKa1b2c3d4e5f6",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t/Value+9",
        "HOME": "/root",
    }
    text = (
        "boom: postgresql://app:tr4ck!ng@db/x refused key k3y-value-42 in /root; "
        "No such key: GKa1b2c3d4e5f6 (secret s3cr3t/Value+9)"
    )
    assert redact_environment(text, env) == (
        f"boom: postgresql://app:{MASK}@db/x refused key {MASK} in /root; "
        f"No such key: {MASK} (secret {MASK})"
    )


# -- what the commands print ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        # libpq cuts at the first "@": "ssXSECRETX@127.0.0.1" is the host it cannot find.
        ("postgresql://app:p@ssXSECRETX@127.0.0.1:1/db", 1),
        # libpq cannot parse these, and says so quoting the offending part.
        ("postgresql://app:pass XSECRETX@127.0.0.1:1/db", 2),
        ("postgresql://app:XSECRETX@[::1/db", 2),
        ("postgresql://127.0.0.1:1/db?password=XSECRETX&bogus=1", 2),
        ("postgresql://app:p%zzXSECRETX@127.0.0.1:1/db", 2),
    ],
)
def test_a_bad_tracking_url_is_one_line_without_its_password(url: str, code: int) -> None:
    result = run_cli("runs", "ls", env={"OMNILAB_TRACKING_URL": url}, timeout=60)
    assert result.returncode == code, result.stderr
    assert "XSECRETX" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")


@pytest.mark.parametrize(
    ("url", "waits"),
    [
        ("redis://127.0.0.1:1/0?password=XSECRETX", True),
        ("unix:///nonexistent/redis.sock?password=XSECRETX&db=1", True),
        ("redis://:p@ss XSECRETX@127.0.0.1:1/0", True),
        # Not a URL Redis can be reached at, ever: one line, exit 1.
        ("redis://:XSECRETX@127.0.0.1:notaport/0", False),
    ],
)
def test_the_worker_never_prints_the_redis_password(url: str, waits: bool) -> None:
    """Redis away at the start is an outage: the worker says once that it waits, and
    exits 0 when told to stop; a URL that can never work is one line, exit 1. Neither
    shows the password."""
    proc = subprocess.Popen(
        [str(OMNILAB), "worker"],
        env={**os.environ, "REDIS_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the waiting line, or the error
        if waits:
            assert "waiting for it" in first, first
            assert proc.poll() is None, first
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    said = first + err
    assert proc.returncode == (0 if waits else 1), said
    if not waits:
        assert len(said.strip().splitlines()) == 1, said
        assert said.startswith("error: ")
    assert "XSECRETX" not in out + said
    assert "Traceback" not in said
