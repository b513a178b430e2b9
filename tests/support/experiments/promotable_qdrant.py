"""Experiments producing one Qdrant collection: cosine vectors, payloads, a payload index.

``QdrantOnly`` runs Qdrant as a server (the runtime's, the tests' binary locally);
``QdrantEmbedded`` in qdrant-client's local mode.
"""

from __future__ import annotations

import warnings

import numpy as np
from qdrant_client import models

from omnilab import Experiment, Params, Qdrant
from omnilab.promote import QdrantCollection


class QdrantOnly(Experiment):
    services = [Qdrant()]
    gpu = False
    promotes = [QdrantCollection("docs")]

    class Params(Params):
        n_points: int = 300
        dim: int = 16
        seed: int = 0

    def run(self, ctx):
        p = ctx.params
        ctx.qdrant.create_collection(
            "docs", vectors_config=models.VectorParams(size=p.dim, distance=models.Distance.COSINE)
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Payload indexes have no effect in the local")
            ctx.qdrant.create_payload_index("docs", "group", field_schema="keyword", wait=True)
        rng = np.random.default_rng(p.seed)
        # Not unit vectors: a server normalises cosine vectors, local mode stores them as given.
        vectors = rng.standard_normal((p.n_points, p.dim)).astype(np.float32) * 3
        ctx.qdrant.upload_collection(
            "docs",
            vectors=vectors,
            payload=(
                {"title": f"doc {i}", "seed": p.seed, "group": f"g{i % 5}", "score": i / 7}
                for i in range(p.n_points)
            ),
            ids=range(p.n_points),
            batch_size=1024,
            wait=True,
        )
        return {"points": ctx.qdrant.count("docs", exact=True).count}


class QdrantEmbedded(QdrantOnly):
    services = [Qdrant(embedded=True)]
