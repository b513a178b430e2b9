"""Qdrant promotion between two servers: 100,000 points of 384 dimensions with payloads,
from a run's Qdrant into production, against the two plain routes, same servers, same run.

    python bench/promote_qdrant.py [--points 100000] [--rounds 3]

Both are Qdrant server processes started by omnilab's local runtime (the ``qdrant`` on
PATH or in OMNILAB_QDRANT_BINARY), each with its own ports, storage and API key, on this
host. The source collection: cosine vectors, payloads of three fields, a keyword payload
index, HNSW indexing off (``indexing_threshold=0``: this machine's two shared cores take
over 15 minutes to build the graph of 100,000 x 384, and each arm's production would then
index in the background of the next arm; every route copies the configuration, so no
production collection indexes).

The peers copy; they do not verify:

- ``upload_points``: qdrant-client ``scroll`` of the source (pages of 2,048, as omnilab
  reads) feeding ``upload_points`` (batch 256, ``parallel=4`` writer processes) into a
  collection created like the source's, payload index included; qdrant-client's defaults
  (HTTP API).
- ``snapshot``: ``create_snapshot`` on the source, ``recover_snapshot`` on production from
  the source's URL with the snapshot's SHA-256 (production downloads it itself: no byte
  passes through Python), the snapshot file deleted.

omnilab's figure is the whole promotion of the item as ``omnilab promote`` does it: plan,
the staged collection created like the source's, each shard's snapshot streamed from the
source into it, verification (every point of both collections read over gRPC and
checksummed, each side from its own server, the source while the copy runs), and the
alias switch. Production is emptied before every arm. CPU seconds of this process (and
its children), of the source server and of production's are measured around each arm.

Goal: omnilab >= 1x the faster peer.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from _common import write
from _promote import medians, promote_item, state_dir
from qdrant_client import QdrantClient, models

from omnilab import Qdrant, Stack
from omnilab.progress import QuietReporter
from omnilab.services.qdrant.promotion import QdrantCollection
from omnilab.services.qdrant.transfer import PAGE

DIM = 384
GOAL = 1.0


def fill(client: QdrantClient, n: int) -> None:
    client.create_collection(
        "docs",
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0),
    )
    client.create_payload_index("docs", "source", field_schema="keyword", wait=True)
    rng = np.random.default_rng(0)
    client.upload_collection(
        "docs",
        vectors=rng.standard_normal((n, DIM)).astype(np.float32),
        payload=({"title": f"doc {i}", "source": "bench", "chunk": i % 17} for i in range(n)),
        ids=range(n),
        batch_size=256,
        parallel=2,
        wait=True,
    )


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    state_dir()
    quiet = QuietReporter()
    with (
        Stack(Qdrant(embedded=False), runtime="local", reporter=quiet) as source,
        Stack(Qdrant(embedded=False), runtime="local", reporter=quiet) as production,
    ):
        src_ep, dst_ep = source.endpoint("qdrant"), production.endpoint("qdrant")
        os.environ["QDRANT_URL"] = production.env["QDRANT_URL"]
        os.environ["QDRANT_API_KEY"] = production.env["QDRANT_API_KEY"]
        os.environ["QDRANT_GRPC_PORT"] = str(dst_ep.ports["grpc"])
        pids = {
            "source": source.services["qdrant"].handle["pid"],
            "production": production.services["qdrant"].handle["pid"],
        }
        version = source.services["qdrant"].version
        src_url = source.env["QDRANT_URL"]
        src_key = source.env["QDRANT_API_KEY"]
        src, dst = source.qdrant, production.qdrant
        began = time.perf_counter()
        fill(src, args.points)
        print(
            f"qdrant promotion, {args.points:,} points of {DIM} dims, {version}, two local "
            f"servers (filled in {time.perf_counter() - began:.1f}s)",
            flush=True,
        )
        assert src.count("docs", exact=True).count == args.points

        def reset() -> None:
            for alias in dst.get_aliases().aliases:
                dst.update_collection_aliases(
                    change_aliases_operations=[
                        models.DeleteAliasOperation(
                            delete_alias=models.DeleteAlias(alias_name=alias.alias_name)
                        )
                    ]
                )
            for collection in dst.get_collections().collections:
                dst.delete_collection(collection.name)
            for snapshot in src.list_snapshots("docs"):
                src.delete_snapshot("docs", snapshot.name, wait=True)

        def create_like_source() -> None:
            info = src.get_collection("docs")
            dst.create_collection(
                "docs",
                vectors_config=info.config.params.vectors,
                optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0),
            )
            dst.create_payload_index("docs", "source", field_schema="keyword", wait=True)

        def upload_points() -> None:
            create_like_source()

            def points() -> Iterator[models.PointStruct]:
                offset = None
                while True:
                    batch, offset = src.scroll(
                        "docs", limit=PAGE, offset=offset, with_vectors=True, with_payload=True
                    )
                    for p in batch:
                        yield models.PointStruct(id=p.id, vector=p.vector, payload=p.payload)
                    if offset is None:
                        return

            dst.upload_points("docs", points(), batch_size=256, parallel=4, wait=True)

        def snapshot() -> None:
            made = src.create_snapshot("docs", wait=True)
            assert made is not None
            dst.recover_snapshot(
                "docs",
                location=f"{src_url}/collections/docs/snapshots/{made.name}",
                api_key=src_key,
                checksum=made.checksum,
                priority=models.SnapshotPriority.SNAPSHOT,
                wait=True,
            )
            src.delete_snapshot("docs", made.name, wait=True)

        item = QdrantCollection("docs")
        arms: dict[str, Callable[[], Any]] = {
            "peer: upload_points": upload_points,
            "peer: snapshot": snapshot,
            "omnilab promote": lambda: promote_item(item, src_ep),
        }
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in arms}
        for i in range(args.rounds):
            for name, arm in arms.items():
                reset()
                cpu = {who: cpu_seconds(pid) for who, pid in pids.items()}
                mine = own_cpu()
                load = os.getloadavg()[0]
                began = time.perf_counter()
                detail = arm() or {}
                elapsed = time.perf_counter() - began
                sample = {
                    "elapsed_s": elapsed,
                    "python_cpu_s": own_cpu() - mine,
                    **{f"{who}_cpu_s": cpu_seconds(pid) - cpu[who] for who, pid in pids.items()},
                    "load": load,
                    **detail,
                }
                results[name].append(sample)
                assert dst.count("docs", exact=True).count == args.points
                print(
                    f"  round {i + 1} {name:22s} {elapsed:7.2f}s  cpu: python "
                    f"{sample['python_cpu_s']:.2f}, source {sample['source_cpu_s']:.2f}, "
                    f"production {sample['production_cpu_s']:.2f}  (load {load:.1f})",
                    flush=True,
                )
        reset()
    report(results, args, version)


def report(results: dict[str, list[dict[str, Any]]], args: Any, version: str | None) -> None:
    summary = {name: medians(samples) for name, samples in results.items()}
    ours = summary["omnilab promote"]
    peers = {n: s for n, s in summary.items() if n.startswith("peer")}
    fastest = min(peers, key=lambda n: peers[n]["elapsed"]["median"])
    ratios = {n: peers[n]["elapsed"]["median"] / ours["elapsed"]["median"] for n in peers}
    for name, s in summary.items():
        phases = ", ".join(
            f"{k.removesuffix('_s')} {s[k]:.2f}"
            for k in s
            if k.endswith("_s") and k not in ("elapsed_s", "total_s")
        )
        print(f"  {name}: median {s['elapsed']['median']:.2f}s ({phases})")
    for name, ratio in ratios.items():
        print(f"  speed ratio against {name}: {ratio:.2f}x")
    print(f"  against the faster peer ({fastest}): {ratios[fastest]:.2f}x (goal >= {GOAL:g}x)")
    data = {
        "points": args.points,
        "dims": DIM,
        "rounds": args.rounds,
        "qdrant": version,
        "goal_ratio": GOAL,
        "faster_peer": fastest,
        "ratio": ratios[fastest],
        "ratios": ratios,
        "medians": summary,
        "load_median": statistics.median(s["load"] for v in results.values() for s in v),
        "samples": results,
    }
    print(f"  results: {write('promote_qdrant', data)}")


if __name__ == "__main__":
    main()
