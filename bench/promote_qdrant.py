"""Qdrant promotion: 100,000 vectors of 384 dimensions with payloads, from a run's Qdrant
into production, against qdrant-client ``upload_points`` (batch 256, 4 workers) into a
fresh collection, same run.

    python bench/promote_qdrant.py [--points 100000] [--rounds 1] [--dir /dev/shm/...]

No Qdrant server exists on this machine: both sides are qdrant-client's local mode
(``QDRANT_URL=file:///...``), the same client calls as against a server. Local mode
commits every point to SQLite, so on a disk the fsync of each commit dominates both arms;
the folders are put on tmpfs (``--dir``, default under /dev/shm) to measure the work
instead of the disk. In local mode ``upload_points`` ignores ``parallel``.

The peer reads the source with ``scroll`` (pages of 2,048 points, as omnilab reads) and
feeds ``upload_points``; it does not verify. omnilab's figure is the whole promotion of
the item: plan, a collection created like the source's, the copy (``upload_points``,
the same uploader), verification (every point read back and compared with the source's,
checksums), and the alias switch.

Goal: omnilab >= 0.8x the peer's speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _promote import alternate, promote_item, report, state_dir
from qdrant_client import QdrantClient, models

from omnilab.services.base import Endpoint
from omnilab.services.qdrant.promotion import PAGE, QdrantCollection

DIM = 384


def fill(path: Path, n: int) -> None:
    client = QdrantClient(path=str(path))
    client.create_collection(
        "docs", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    rng = np.random.default_rng(0)
    client.upload_points(
        "docs",
        (
            models.PointStruct(
                id=i,
                vector=rng.standard_normal(DIM).astype(np.float32).tolist(),
                payload={"title": f"doc {i}", "source": "bench", "chunk": i % 17},
            )
            for i in range(n)
        ),
        batch_size=256,
    )
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    args = parser.parse_args()
    state_dir()
    base = Path(tempfile.mkdtemp(prefix="omnilab-bench-qdrant-", dir=args.dir))
    source, production = base / "source", base / "production"
    os.environ["QDRANT_URL"] = f"file://{production}"
    import warnings

    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    try:
        print(f"qdrant promotion, {args.points:,} points of {DIM} dims, local mode in {base}")
        fill(source, args.points)

        def reset() -> None:
            shutil.rmtree(production, ignore_errors=True)

        def upload_points() -> None:
            src, dst = QdrantClient(path=str(source)), QdrantClient(path=str(production))
            try:
                dst.create_collection(
                    "docs",
                    vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
                )

                def points():  # type: ignore[no-untyped-def]
                    offset = None
                    while True:
                        batch, offset = src.scroll(
                            "docs", limit=PAGE, offset=offset, with_vectors=True, with_payload=True
                        )
                        for p in batch:
                            yield models.PointStruct(id=p.id, vector=p.vector, payload=p.payload)
                        if offset is None:
                            return

                dst.upload_points("docs", points(), batch_size=256, parallel=4)
            finally:
                src.close()
                dst.close()

        endpoint = Endpoint(service="qdrant", path=source)
        arms = {
            "peer: upload_points": upload_points,
            "omnilab promote": lambda: promote_item(QdrantCollection("docs"), endpoint),
        }
        results = alternate(arms, reset, args.rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(
        "promote_qdrant",
        results,
        "peer: upload_points",
        0.8,
        {
            "points": args.points,
            "dims": DIM,
            "rounds": args.rounds,
            "storage": args.dir or "default temporary folder",
        },
    )


if __name__ == "__main__":
    main()
