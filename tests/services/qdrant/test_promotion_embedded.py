"""Qdrant promotion with qdrant-client's local mode on one side or both.

Local mode keeps cosine vectors normalised in memory but stores them as given: a
local-mode production is reopened before its copy is read back, so both checksums come
from what each side stores. A run in local mode promoted into a server is compared point
by point for its vectors (the server normalises them), by checksum for the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models

import omnilab
from omnilab.progress import QuietReporter
from omnilab.promote import PromotionFailed, promote, rollback
from omnilab.services.qdrant.promotion import MARK, QdrantPromoter
from omnilab.services.qdrant.transfer import CLIENT_METHOD
from tests.support import EXPERIMENTS
from tests.support.promotion_support import Production

Q = QuietReporter()
EXPERIMENT = str(EXPERIMENTS / "promotable_qdrant.py")


def run_embedded(**params: Any) -> omnilab.Run:
    run = omnilab.run(f"{EXPERIMENT}:QdrantEmbedded", params=params, reporter=Q)
    assert run.ok, run.error
    assert "local mode" in run.record.stack["services"]["qdrant"]["source"]
    return run


@pytest.fixture(name="local_production")
def local_production_fixture(
    production: Production, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Production]:
    """Production's Qdrant in local mode, in a folder of this test's own."""
    url = f"file://{workdir / 'production-qdrant'}"
    monkeypatch.setenv("QDRANT_URL", url)
    monkeypatch.delenv("QDRANT_API_KEY")
    monkeypatch.delenv("QDRANT_GRPC_PORT")
    yield Production(production.redis_url, production.postgres_url, url)


def test_local_mode_both_sides_checksums_each_side_and_rolls_back_exactly(
    local_production: Production,
) -> None:
    client = local_production.qdrant()
    client.create_collection(
        "docs", vectors_config=models.VectorParams(size=16, distance=models.Distance.DOT)
    )
    client.upsert("docs", [models.PointStruct(id=1, vector=[1.0] * 16, payload={"prod": 1})])
    client.close()
    before = local_production.snapshot()
    run = run_embedded(seed=4, n_points=120)
    result = promote(run.id, on_conflict="replace", reporter=Q)
    [item] = result.items
    source, target = item.checksums["source"], item.checksums["target"]
    assert source == target and target["points"] == 120 and target["method"] == CLIENT_METHOD
    assert item.checksums["replaced"]["points"] == 1
    # Stored as given on both sides: what the run wrote, not normalised.
    points = local_production.points("docs")
    assert np.linalg.norm(points[5].vector) > 1.5
    assert rollback(result.id, reporter=Q).status == "rolled_back"
    assert local_production.snapshot() == before


def test_local_mode_a_vector_changed_in_the_staged_copy_fails_the_promotion(
    local_production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_embedded(seed=5, n_points=100)
    digest = QdrantPromoter._client_digest
    changed: list[str] = []

    def change_then_digest(self: QdrantPromoter, client: Any, name: str) -> Any:
        if MARK in name and not changed:
            client.update_vectors(name, [models.PointVectors(id=7, vector=[0.25] * 16)])
            changed.append(name)
        return digest(self, client, name)

    monkeypatch.setattr(QdrantPromoter, "_client_digest", change_then_digest)
    with pytest.raises(PromotionFailed, match=r"point 7: vectors differ.*vectors_sum differ"):
        promote(run.id, reporter=Q)
    assert changed
    assert local_production.qdrant_state() == {"aliases": [], "collections": {}}


def test_a_local_mode_run_into_a_server_compares_normalised_vectors_point_by_point(
    production: Production,
) -> None:
    run = run_embedded(seed=6, n_points=150)
    result = promote(run.id, reporter=Q)
    [item] = result.items
    source, target = item.checksums["source"], item.checksums["target"]
    assert source["points"] == target["points"] == 150
    assert source["payloads_sum"] == target["payloads_sum"]
    assert source["vectors_sum"] != target["vectors_sum"]  # normalised by the server
    assert item.checksums["vectors"].startswith("compared point by point")
    assert item.checksums["max_vector_difference"] < 1e-5
    points = production.points("docs")
    assert abs(np.linalg.norm(points[5].vector) - 1) < 1e-5
