"""Schemathesis against the live server's OpenAPI document: every operation, generated
valid and invalid input, every check (no 500, documented status codes and schemas, auth
enforced). Real server, real Redis and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import TESTS
from queue_helpers import Api

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_nothing(api: Api, workdir: Path) -> None:
    key = api.keys.setdefault("all", _all_scopes_key())
    run, promotion = _record_a_promotion()
    # Ids cannot be guessed, and no run of this server has succeeded: the promotion
    # endpoints get a recorded run and promotion (refused with 409s, as they should be).
    config = [("promote_run", "run_id", run)]
    config += [(op, "promotion_id", promotion) for op in ("get_promotion", "rollback_promotion")]
    (workdir / "schemathesis.toml").write_text(
        "".join(
            f'[[operations]]\ninclude-operation-id = "{op}"\n'
            f'parameters = {{ {name} = "{value}" }}\n'
            for op, name, value in config
        )
    )
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{api.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--request-timeout",
            "20",
            "--workers",
            "1",
            "--suppress-health-check",
            "too_slow",
        ],
        cwd=workdir,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
            "PYTHONPATH": str(TESTS),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert "Traceback" not in api.service.output


def _record_a_promotion() -> tuple[str, str]:
    """A recorded (rolled back) promotion of a recorded run: the promotion endpoints have
    something to find besides 404s."""
    import uuid
    from datetime import UTC, datetime

    from omnilab.promote.records import PromotionRecord, PromotionStore
    from omnilab.tracking.records import RunRecord
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        run_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        store.create_run(
            RunRecord(id=run_id, experiment="Quick", status="succeeded", created_at=now)
        )
        record = PromotionRecord.start(uuid.uuid4().hex, run_id, "fail", "test")
        record.status, record.rolled_back_at, record.rolled_back_by = "rolled_back", now, "test"
        PromotionStore(store).save(record)
    return run_id, record.id


def _all_scopes_key() -> str:
    from queue_helpers import make_key

    return make_key("read", "run", "promote", name="schemathesis")
