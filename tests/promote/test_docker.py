"""Promotion from a run of the docker runtime: its stack stops with its data kept in the
project, containers are made again on that data to promote, and nothing is left."""

from __future__ import annotations

from pathlib import Path

import pytest

import omnilab
from omnilab.progress import QuietReporter
from omnilab.promote import promote
from tests.support import EXPERIMENTS
from tests.support.promotion_support import Production


@pytest.mark.usefixtures("docker_scope")
def test_a_docker_run_is_promoted_from_its_kept_data(production: Production, workdir: Path) -> None:
    run = omnilab.run(
        str(EXPERIMENTS / "promotable_no_qdrant.py"), runtime="docker", reporter=QuietReporter()
    )
    assert run.ok, run.error
    path = Path(run.data["path"])
    assert path.parent == workdir / "data" / "experiments"
    assert (path / "redis").is_dir() and (path / "postgres").is_dir()
    result = promote(run.id, reporter=QuietReporter())
    assert result.status == "succeeded"
    redis_item = next(i for i in result.items if i.plan.service == "redis")
    # The containers cannot reach production on the host's loopback: through omnilab.
    assert redis_item.staging["copy_method"] == "dump-restore"
    client = production.redis()
    assert client.get("emb:7") == b"7" and client.ttl("emb:7") > 3000 and client.ttl("emb:8") == -1
    assert client.hget("emb:meta", "n") == b"200"
    client.close()
    with production.pg() as conn:
        assert conn.execute("SELECT count(*), max(id) FROM scores").fetchone() == (300, 300)
    assert not path.exists()  # released with the promotion
