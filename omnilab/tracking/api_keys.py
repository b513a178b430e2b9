"""API keys: created once, shown once, stored as a hash, checked on every request.

A key reads ``olk_<id>_<secret>``: the id finds the row, the secret (256 random bits) is
compared by its SHA-256 in constant time. The secret itself is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from omnilab.errors import UsageError
from omnilab.tracking.base import Store

Scope = Literal["read", "run", "promote"]
SCOPES: tuple[str, ...] = ("read", "run", "promote")
PREFIX = "olk"
_KEY_RE = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
_COLUMNS = "id, name, scopes, created_by, created_at, last_used_at, revoked_at"


class ApiKeyRecord(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_by: str | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise UsageError(
            f"unknown scope {unknown[0]!r}: choose among {', '.join(SCOPES)} (repeat --scope)"
        )
    if not scopes:
        raise UsageError(f"an API key needs at least one scope ({', '.join(SCOPES)})")
    return [s for s in SCOPES if s in scopes]


class ApiKeyStore(Store):
    """The HTTP API's keys (``omnilab.api_keys``): only their SHA-256 is stored."""

    def create(
        self, name: str, scopes: list[str], *, created_by: str | None = None
    ) -> tuple[ApiKeyRecord, str]:
        """A new key; returns its record and the key itself (the only time it exists in
        clear)."""
        name = name.strip()
        if not name or len(name) > 100 or not name.isprintable():
            raise UsageError("--name: give a printable name of 1 to 100 characters")
        scopes = check_scopes(scopes)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        row = self._dict_row(
            f"""
            INSERT INTO omnilab.api_keys (id, name, scopes, secret_sha256, created_by)
            VALUES (%s, %s, %s, %s, %s)
            RETURNING {_COLUMNS}
            """,
            (key_id, name, scopes, _digest(secret), created_by),
        )
        assert row is not None
        return ApiKeyRecord.model_validate(row), f"{PREFIX}_{key_id}_{secret}"

    def verify(self, token: str) -> ApiKeyRecord | None:
        """The active key ``token`` is, or None (malformed, unknown, wrong secret,
        revoked)."""
        match = _KEY_RE.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        row = self._dict_row(
            f"SELECT {_COLUMNS}, secret_sha256 FROM omnilab.api_keys WHERE id = %s",
            (key_id,),
        )
        if row is None:
            return None
        stored = row.pop("secret_sha256")
        if not hmac.compare_digest(stored, _digest(secret)) or row["revoked_at"] is not None:
            return None
        return ApiKeyRecord.model_validate(row)

    def active(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id if it is not revoked (the web UI's session names its key
        by id and asks again on each page, so that a revoked key's sessions end too)."""
        row = self._dict_row(
            f"SELECT {_COLUMNS} FROM omnilab.api_keys WHERE id = %s AND revoked_at IS NULL",
            (key_id,),
        )
        return ApiKeyRecord.model_validate(row) if row is not None else None

    def touch(self, key_id: str) -> None:
        self._execute("UPDATE omnilab.api_keys SET last_used_at = now() WHERE id = %s", (key_id,))

    def list_keys(self, *, include_revoked: bool = False) -> list[ApiKeyRecord]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = self._dict_rows(
            f"SELECT {_COLUMNS} FROM omnilab.api_keys {where} ORDER BY created_at"
        )
        return [ApiKeyRecord.model_validate(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKeyRecord:
        """Revoke by id (the 12 characters after ``olk_``) or by the whole key."""
        match = _KEY_RE.match(key_id)
        key_id = match.group(1) if match else key_id.strip()
        row = self._dict_row(
            "UPDATE omnilab.api_keys SET revoked_at = coalesce(revoked_at, now()) "
            f"WHERE id = %s RETURNING {_COLUMNS}",
            (key_id,),
        )
        if row is None:
            raise UsageError(f"no API key with id {key_id!r} (see `omnilab api-key ls`)")
        return ApiKeyRecord.model_validate(row)
