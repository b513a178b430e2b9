"""Schemathesis against the live server's OpenAPI document: every operation, generated
valid and invalid input, every check (no 500, documented status codes and schemas, auth
enforced). Real server, real Redis and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi import FastAPI, Header
from fastapi.openapi.utils import get_openapi

from omnilab.api.app import create_app
from omnilab.api.auth import RunKey
from omnilab.api.models import RunRequest
from omnilab.api.routes import submit
from omnilab.catalog import Catalog
from tests.support import API_EXPERIMENTS, SUPPORT
from tests.support.queue_helpers import Api

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_nothing(api: Api, workdir: Path) -> None:
    key = api.keys.setdefault("all", _all_scopes_key())
    run, promotion = _record_a_promotion(workdir)
    # Ids cannot be guessed, and no run of this server has succeeded: the promotion and
    # discard endpoints get a recorded run and promotion (refused with 409s, as they should
    # be: it kept no data), the artifact download that run's artifact. Without them, their
    # answers are all 404s, which schemathesis reports as missing test data (a warning).
    config = [(op, f'run_id = "{run}"') for op in ("promote_run", "discard_run")]
    config += [
        (op, f'promotion_id = "{promotion}"') for op in ("get_promotion", "rollback_promotion")
    ]
    config += [("get_artifact", f'run_id = "{run}", path = "{ARTIFACT}"')]
    (workdir / "schemathesis.toml").write_text(
        "".join(
            f'[[operations]]\ninclude-operation-id = "{op}"\nparameters = {{ {values} }}\n'
            for op, values in config
        )
        # The same Idempotency-Key with another body is refused with 422 (the IETF
        # draft's status); schemathesis reuses header values between generated requests,
        # so for this one operation a 422 is an expected answer to valid data
        # (tests/api/test_runs.py checks that only a reused key gets it).
        + '[[operations]]\ninclude-path = "/v1/runs"\ninclude-method = "POST"\n'
        "[operations.checks.positive_data_acceptance]\nexpected-statuses = "
        '["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]\n'
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
            "PYTHONPATH": str(SUPPORT),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-6000:]
    assert "Traceback" not in api.service.output


#: The artifact of the run the promotion endpoints are given.
ARTIFACT = "out.bin"


def _record_a_promotion(workdir: Path) -> tuple[str, str]:
    """A recorded (rolled back) promotion of a recorded run with an artifact in its
    folder: the promotion and artifact endpoints have something to find besides 404s."""
    import hashlib
    import uuid
    from datetime import UTC, datetime

    from omnilab.promote.records import PromotionRecord, PromotionStore
    from omnilab.tracking.records import ArtifactRecord, RunRecord
    from omnilab.tracking.store import TrackingStore

    with TrackingStore.open() as store:
        run_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        run_dir = workdir / "runs" / run_id
        (run_dir / "artifacts").mkdir(parents=True)
        content = b"\x00\x01 an artifact"
        (run_dir / "artifacts" / ARTIFACT).write_bytes(content)
        store.create_run(
            RunRecord(
                id=run_id,
                experiment="Quick",
                status="succeeded",
                created_at=now,
                run_dir=str(run_dir),
            )
        )
        digest = hashlib.sha256(content).hexdigest()
        store.record_artifact(
            run_id, ArtifactRecord(path=ARTIFACT, size=len(content), sha256=digest)
        )
        record = PromotionRecord.start(uuid.uuid4().hex, run_id, "fail", "test")
        record.status, record.rolled_back_at, record.rolled_back_by = "rolled_back", now, "test"
        PromotionStore(store).save(record)
    return run_id, record.id


def _all_scopes_key() -> str:
    from tests.support.queue_helpers import make_key

    return make_key("read", "run", "promote", name="schemathesis")


def test_queue_is_documented_as_fastapi_derives_it_from_a_signature() -> None:
    """POST /v1/runs reads its own request; its document must still say what FastAPI
    says of the same checks declared in a signature (key, body model, header)."""
    reference = FastAPI()

    @reference.post("/v1/runs")
    async def queue(
        key: RunKey,
        body: RunRequest,
        idempotency_key: str | None = Header(
            default=None,
            max_length=submit.IDEMPOTENCY_KEY_MAX,
            pattern=submit.IDEMPOTENCY_KEY_PATTERN,
            description=submit.IDEMPOTENCY_KEY_DOC,
        ),
    ) -> None:
        """Not served: only documented."""

    expected = reference.openapi()
    app = create_app(catalog=Catalog(API_EXPERIMENTS))
    raw = get_openapi(title=app.title, version=app.version, routes=app.routes)
    operation = raw["paths"]["/v1/runs"]["post"]
    wanted = expected["paths"]["/v1/runs"]["post"]
    for part in ("parameters", "requestBody", "security"):
        assert operation[part] == wanted[part], part
    assert raw["components"]["securitySchemes"] == expected["components"]["securitySchemes"]
    # The body model the document refers to is there (pydantic's own schema of it; the
    # one difference from FastAPI's rendering is that it names the null defaults).
    documented = app.openapi()["components"]["schemas"]["RunRequest"]
    for field in ("retries", "name"):
        assert documented["properties"][field].pop("default") is None
    assert documented == expected["components"]["schemas"]["RunRequest"]
