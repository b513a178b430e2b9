"""Forking from production with read-only credentials: what is copied, verified, recorded,
and that production is exactly as it was."""

from __future__ import annotations

import re

import pytest

import omnilab
from omnilab.errors import UsageError
from omnilab.progress import QuietReporter
from omnilab.promote import PostgresTable, RedisKeys
from omnilab.services.promotable import check_promotes
from tests.fork.conftest import ReadOnly, fill
from tests.support import EXPERIMENTS, run_cli, stack_processes

FORKED = f"{EXPERIMENTS / 'forked.py'}:Forked"
BY_PARAMS = f"{EXPERIMENTS / 'forked.py'}:ForkedByParams"


def test_a_fork_with_read_only_credentials_copies_verifies_and_records(
    read_only: ReadOnly,
) -> None:
    fill(read_only)
    before = read_only.snapshot()
    run = omnilab.run(FORKED, reporter=QuietReporter())
    assert run.ok, run.error
    found = run.summary
    users = found["tables"]["users"]
    assert [u[0] for u in users] == [2, 4, 6, 8, 10]  # where="active"
    assert all(u[2] is True for u in users)
    assert len(found["tables"]["orders"]) == 7
    assert found["keys"] == sorted(
        [f"emb:{i}" for i in range(12)] + ["emb:set", "emb:stream"]
    )  # "other" is not emb:*
    assert found["ttls"] == 2  # emb:0 and emb:8
    assert len(found["collections"]["docs"]) == 30
    # Provenance: per item, production's counts and checksum at fork time and the copy's.
    seeds = {s["label"]: s for s in run.record.seeds}
    assert set(seeds) == {
        "postgres table users",
        "postgres table orders",
        "redis keys emb:*",
        "qdrant collection docs",
    }
    users_seed = seeds["postgres table users"]
    assert users_seed["production"]["rows"] == 10
    assert users_seed["production"]["selected"] == 5
    assert users_seed["production"]["checksum"] == users_seed["run"]["checksum"]
    assert seeds["redis keys emb:*"]["production"]["keys"] == 14
    assert seeds["qdrant collection docs"]["production"]["points"] == 30
    assert "snapshot" in seeds["postgres table orders"]["consistency"]
    assert all("***" in s["url"] or "@" not in s["url"] for s in seeds.values())
    # A new row in the run continues production's sequence.
    assert "fork_s" in run.timings
    # Production did not change, and nothing of the fork was written there.
    assert read_only.snapshot() == before
    shown = run_cli("runs", "show", run.id[:8])
    assert shown.returncode == 0, shown.stderr
    assert "forked from production" in shown.stdout, shown.stdout
    assert "postgres table users" in shown.stdout, shown.stdout
    assert "5 of 10 rows" in shown.stdout, shown.stdout
    assert "forked from production" in run._repr_html_()


def test_no_seed_starts_on_an_empty_stack(read_only: ReadOnly) -> None:
    fill(read_only)
    result = run_cli("run", FORKED, "--no-seed", "--json")
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    assert data["seeds"] is None
    assert data["summary"]["tables"] == {} and data["summary"]["keys"] == []


def test_a_seed_missing_in_production_is_one_line_exit_2_nothing_started(
    read_only: ReadOnly,
) -> None:
    fill(read_only)
    with read_only.admin.pg() as conn:
        conn.execute("DROP TABLE orders")
    result = run_cli("run", FORKED)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: seed postgres table orders: ")
    assert "has no table public.orders" in lines[-1]
    assert not stack_processes()
    assert "run " not in result.stderr  # no run was recorded nor started
    listed = run_cli("runs", "ls", "--json")
    assert listed.returncode == 0 and listed.stdout.strip() in ("[]", "")


@pytest.mark.parametrize(
    ("variable", "value", "service", "reason"),
    [
        (
            "POSTGRES_URL",
            "postgresql://reader_fork:wrong-secret@127.0.0.1:{pg}/omnimind",
            "PostgreSQL",
            "password authentication failed",
        ),
        (
            "REDIS_URL",
            "redis://reader_fork:wrong-secret@127.0.0.1:{redis}/0",
            "Redis",
            "invalid username-password pair",
        ),
        ("QDRANT_API_KEY", "wrong-secret", "Qdrant", "credentials refused (HTTP"),
        (
            "REDIS_URL",
            "redis://reader_fork:wrong-secret@127.0.0.1:1/0",
            "Redis",
            "Connection refused",
        ),
        # libpq's cause, not the hint it indents under it ("Is the server running...?"):
        # what a fork gets where 127.0.0.1 is not production's host (in a container).
        (
            "POSTGRES_URL",
            "postgresql://reader_fork:wrong-secret@127.0.0.1:1/omnimind",
            "PostgreSQL",
            "port 1 failed: Connection refused",
        ),
    ],
)
def test_production_unreachable_or_refused_is_one_line_naming_it(
    read_only: ReadOnly, variable: str, value: str, service: str, reason: str
) -> None:
    from urllib.parse import urlsplit

    fill(read_only)
    pg_port = re.search(r"port=(\d+)", read_only.env["POSTGRES_URL"])
    ports = {
        "pg": pg_port.group(1) if pg_port else "5432",
        "redis": urlsplit(read_only.env["REDIS_URL"]).port,
    }
    result = run_cli("run", FORKED, env={variable: value.format(**ports)})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: cannot reach production {service} at "), lines
    assert reason in lines[-1], lines[-1]
    assert "\t" not in lines[-1] and "Is the server running" not in lines[-1], lines[-1]
    assert "wrong-secret" not in result.stderr
    assert not stack_processes()


def test_no_fork_where_the_production_variables_name_experiment_services(
    read_only: ReadOnly,
) -> None:
    """``ENVIRONMENT=docker_experiments`` (code in a container on a stack's network): the
    variables name the experiment services, so a copy would be recorded as production's."""
    fill(read_only)
    result = run_cli("run", FORKED, env={"ENVIRONMENT": "docker_experiments"})
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ENVIRONMENT=docker_experiments: "), last
    assert "not at production" in last and "--no-seed" in last, last
    assert not stack_processes()


def test_seeds_from_params_and_a_deterministic_sample(read_only: ReadOnly) -> None:
    fill(read_only, users=200, keys=200, points=200)

    def forked(**params: object) -> dict:
        run = omnilab.run(BY_PARAMS, params=params, reporter=QuietReporter())
        assert run.ok, run.error
        return run.summary

    limited = forked(where="id > 100", limit=3)
    assert [u[0] for u in limited["tables"]["users"]] == [101, 102, 103]  # primary-key order
    assert limited["keys"] == sorted(limited["keys"]) and len(limited["keys"]) == 3
    assert [p[0] for p in limited["collections"]["docs"]] == [0, 1, 2]
    one = forked(sample=0.3, seed=7)
    again = forked(sample=0.3, seed=7)
    other = forked(sample=0.3, seed=8)
    for part in ("keys", "collections"):
        assert one[part] == again[part]
    assert one["tables"] == again["tables"]
    assert one["tables"] != other["tables"] and one["keys"] != other["keys"]
    rows = len(one["tables"]["users"])
    assert 30 < rows < 90, rows  # about 30% of 200
    assert 30 < len(one["collections"]["docs"]) < 90


def test_bad_seeds_are_refused_before_anything_starts(read_only: ReadOnly) -> None:
    result = run_cli("run", f"{EXPERIMENTS / 'forked.py'}:Unseeded")
    assert result.returncode == 2
    assert "needs the postgres service" in result.stderr.strip().splitlines()[-1]
    assert not stack_processes()
    with pytest.raises(UsageError, match="sample="):
        RedisKeys("emb:*", sample=1.5)
    with pytest.raises(UsageError, match="a promotion copies the whole item"):
        check_promotes([PostgresTable("users", where="active")], ["postgres"], "X")
