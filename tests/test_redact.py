"""One redaction for every URL, DSN and secret shown: the secret never comes out, the
address stays readable, however the string is (mis)written."""

from __future__ import annotations

import pytest

from omnilab.redact import MASK, redact, redact_url

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
