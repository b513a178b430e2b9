"""API keys: shown once, stored hashed, 401 without a valid one, 403 without the scope."""

from __future__ import annotations

import json

import psycopg

from tests.support import run_cli
from tests.support.queue_helpers import Api, make_key


def test_a_key_is_printed_once_and_stored_hashed(tracking_db: str) -> None:
    created = run_cli("api-key", "create", "--name", "ci", "--scope", "read")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("olk_") and "\n" not in key
    assert "Shown once" in created.stderr and key not in created.stderr
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    with psycopg.connect(tracking_db) as conn:
        row = conn.execute(
            "SELECT api_keys::text FROM omnilab.api_keys WHERE id = %s", (key_id,)
        ).fetchone()
    assert row is not None and secret not in row[0]
    listed = run_cli("api-key", "ls", "--json")
    assert [k["name"] for k in json.loads(listed.stdout)] == ["ci"]
    assert secret not in listed.stdout
    assert run_cli("api-key", "revoke", key_id).returncode == 0
    assert json.loads(run_cli("api-key", "ls", "--json").stdout) == []
    again = run_cli("api-key", "revoke", "000000000000")
    assert again.returncode == 2 and "no API key" in again.stderr


def test_bad_key_requests_are_refused_in_one_line(tracking_db: str) -> None:
    for args, words in (
        (["--scope", "admin"], "unknown scope 'admin'"),
        (["--name", ""], "--name"),
    ):
        full = ["api-key", "create", *(["--name", "x"] if "--name" not in args else []), *args]
        result = run_cli(*full)
        assert result.returncode == 2, result.stderr
        assert words in result.stderr and "Traceback" not in result.stderr


def test_401_without_a_valid_key_403_without_the_scope(api: Api) -> None:
    with api.anonymous() as anonymous:
        missing = anonymous.get("/v1/runs")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "api-key create" in missing.json()["detail"]
        for header in (
            "Bearer olk_000000000000_" + "A" * 43,
            "Bearer nonsense",
            "Basic dXNlcjpwYXNz",
        ):
            response = anonymous.get("/v1/experiments", headers={"Authorization": header})
            assert response.status_code == 401, header
        assert anonymous.get("/healthz").status_code == 200
    key = make_key("read")
    # Right id, wrong secret: still 401.
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with api.client(key=forged) as client:
        assert client.get("/v1/runs").status_code == 401
    with api.client(key=key) as reader:
        assert reader.get("/v1/runs").status_code == 200
        refused = reader.post("/v1/runs", json={"experiment": "Quick"})
        assert refused.status_code == 403
        assert "'run' scope" in refused.json()["detail"]
        assert reader.post("/v1/runs/" + "0" * 32 + "/cancel").status_code == 403
    runner = make_key("run")
    with api.client(key=runner) as client:
        assert client.post("/v1/runs", json={"experiment": "Quick"}).status_code == 202
        assert client.get("/v1/runs").status_code == 403
    # Revoked: refused at once (the test server trusts a checked key for 0 s).
    assert run_cli("api-key", "revoke", key.split("_")[1]).returncode == 0
    with api.client(key=key) as reader:
        assert reader.get("/v1/runs").status_code == 401
