"""What promotion and fork share for Qdrant: reaching production, making a collection
like another, reading one a page at a time, copying pages of points between two servers
(:func:`copy_pages`), and the checksum of points read through qdrant-client.

Both directions copy points between two Qdrants (the run's into production for a
promotion, production's into the run's for a fork); keeping these here lets
:mod:`.promotion` and :mod:`.fork` each import it without importing one another.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from omnilab.errors import UsageError
from omnilab.redact import redact_text, redact_url
from omnilab.services.promotable import Sum64
from omnilab.services.qdrant import points, servers

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from omnilab.config import Settings
    from omnilab.services.base import Endpoint
    from omnilab.services.promotable import Progress

#: Points per upload request (qdrant-client's usual batch).
BATCH = 256
#: Points per upsert request of a point copy between two servers over gRPC (a fork's,
#: promotion's between servers of different versions): fewer, larger requests cost the
#: receiving server less per point; 1,024 copied 100,000 points of 384 dimensions in
#: 4.2 s against 5.4 s with 256 (docs/benchmarks.md, "Fork from production").
SERVER_BATCH = 1024
#: Points per scroll page when reading: local mode sorts every id for each page, so
#: fewer, larger pages read a large collection many times faster.
PAGE = 2048
#: Writers against a server (as ``upload_points(parallel=4)``); local mode is one store
#: in this process, written by one.
WRITERS = 4
#: How the checksums of :mod:`.points` are recorded (older records carry no method).
CLIENT_METHOD = "json-float32"


def production_client(settings: Settings) -> QdrantClient:
    """The client for ``QDRANT_URL``: a server URL, or ``file:///path`` for local mode."""
    import warnings

    from qdrant_client import QdrantClient

    url = settings.qdrant_url
    if url.startswith("file://"):
        return QdrantClient(path=url[len("file://") :])
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"QDRANT_URL {redact_url(url)}: use http(s)://host:port or file:///path")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Api key is used with an insecure")
        try:
            return QdrantClient(url=url, api_key=settings.qdrant_api_key, timeout=120)
        except ValueError as exc:  # urllib3's parser quotes the URL, secrets and all
            raise UsageError(
                f"QDRANT_URL {redact_url(url)} cannot be used: {redact_text(str(exc), url)}"
            ) from None


def production_address(settings: Settings) -> servers.Address | None:
    """Production's HTTP URL, gRPC port and key; None for local mode."""
    url = settings.qdrant_url
    if not url.startswith(("http://", "https://")):
        return None
    port = settings.qdrant_grpc_port
    if port is None:
        http_port = urlsplit(url).port
        port = http_port + 1 if http_port else 6334
    return servers.Address(url, port, settings.qdrant_api_key)


def source_address(endpoint: Endpoint) -> servers.Address | None:
    """The run's Qdrant as a server; None in local mode or without a gRPC port."""
    if endpoint.path is not None or "grpc" not in endpoint.ports:
        return None
    url = f"http://{endpoint.host}:{endpoint.ports['http']}"
    return servers.Address(
        url, endpoint.ports["grpc"], endpoint.credentials.password, contained=endpoint.contained
    )


def create_like(dst: QdrantClient, name: str, src: QdrantClient, src_name: str) -> None:
    """Create collection ``name`` on ``dst`` with ``src_name``'s configuration (vectors,
    sparse vectors, shards, HNSW, optimizers, WAL, quantization) and payload indexes: a
    promotion's staged collection in production, a fork's copy in the run's Qdrant."""
    from qdrant_client import models

    info = src.get_collection(src_name)
    config = info.config
    params = config.params
    dst.create_collection(
        name,
        vectors_config=params.vectors,
        sparse_vectors_config=params.sparse_vectors,
        shard_number=params.shard_number,
        on_disk_payload=params.on_disk_payload,
        hnsw_config=models.HnswConfigDiff(**config.hnsw_config.model_dump())
        if config.hnsw_config
        else None,
        optimizers_config=models.OptimizersConfigDiff(**config.optimizer_config.model_dump())
        if config.optimizer_config
        else None,
        wal_config=models.WalConfigDiff(**config.wal_config.model_dump())
        if config.wal_config
        else None,
        quantization_config=config.quantization_config,
    )
    for field, schema in (info.payload_schema or {}).items():
        dst.create_payload_index(
            name, field, field_schema=schema.params or schema.data_type, wait=True
        )


def is_local(client: QdrantClient) -> bool:
    """Is this client qdrant-client's local mode (a folder, no server)?"""
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


def scroll(client: QdrantClient, name: str) -> Iterator[list[Any]]:
    """Every point of collection ``name`` (vectors and payloads), ``PAGE`` at a time."""
    offset = None
    while True:
        batch, offset = client.scroll(
            name, limit=PAGE, offset=offset, with_vectors=True, with_payload=True
        )
        if batch:
            yield batch
        if offset is None:
            return


def checksum(payloads: Sum64, vectors: Sum64) -> dict[str, Any]:
    """A checksum as recorded, from the sums of points read through qdrant-client."""
    return {
        "points": payloads.count,
        "payloads_sum": payloads.hex,
        "vectors_sum": vectors.hex,
        "method": CLIENT_METHOD,
    }


def client_digest(client: QdrantClient, name: str) -> dict[str, Any]:
    """The checksum of collection ``name`` in full, read through qdrant-client."""
    payloads, vectors = Sum64(), Sum64()
    for batch in scroll(client, name):
        points.add_digests(batch, payloads, vectors)
    return checksum(payloads, vectors)


def cosine_names(params: Any) -> frozenset[str]:
    """The names of a collection's vectors compared by cosine ("" for its one unnamed
    vector): those a server normalises on write."""
    from qdrant_client import models

    vectors = params.vectors
    if vectors is None:
        return frozenset()
    if isinstance(vectors, dict):
        return frozenset(n for n, v in vectors.items() if v.distance == models.Distance.COSINE)
    return frozenset({""}) if vectors.distance == models.Distance.COSINE else frozenset()


def dimensions(params: Any) -> dict[str, int]:
    """Each dense vector's size, by name ("" for a collection's one unnamed vector)."""
    vectors = params.vectors
    if vectors is None:
        return {}
    if isinstance(vectors, dict):
        return {name: v.size for name, v in vectors.items()}
    return {"": vectors.size}


def copy_pages(
    pages: Iterable[Sequence[Any]], dst: servers.QdrantServer, name: str, progress: Progress
) -> dict[str, Any]:
    """Write pages of points read from one server (protobuf ``RetrievedPoint``s) into
    ``name`` on ``dst``, :data:`WRITERS` requests of :data:`SERVER_BATCH` points in
    flight; returns the checksum of the pages (:class:`.servers.Digest`).

    Each point is serialized once, for the checksum, and those bytes become the point
    written (:func:`.servers.point_struct_bytes`): no message is built in this process.
    """
    digest = servers.Digest()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        pending: deque[Future[None]] = deque()
        for page in pages:
            structs = [servers.point_struct_bytes(p) for p in digest.add(page)]
            for start in range(0, len(structs), SERVER_BATCH):
                chunk = structs[start : start + SERVER_BATCH]
                pending.append(pool.submit(dst.upsert_serialized, name, chunk))
            while len(pending) > 2 * WRITERS:
                pending.popleft().result()
            progress.advance(len(page))
        while pending:
            pending.popleft().result()
    return digest.checksum()


def whole_shards(
    src: servers.QdrantServer, dst: servers.QdrantServer, params: Any, src_name: str
) -> list[int] | None:
    """The shard ids of ``src_name`` where its shards can move to ``dst`` as snapshots:
    every shard on ``src`` (one node), automatic sharding, and both servers of one version
    (a shard snapshot loads in the version that wrote it); None otherwise."""
    shards = src.shards(src_name)
    if shards != list(range(params.shard_number or 1)):
        return None
    if getattr(params, "sharding_method", None) not in (None, "auto"):
        return None
    if src.version() != dst.version():
        return None
    return shards


def move_shards(
    src: servers.QdrantServer,
    dst: servers.QdrantServer,
    names: tuple[str, str],
    shards: list[int],
    note: Callable[[str], None],
) -> str:
    """Each shard of ``names[0]`` on ``src`` into collection ``names[1]`` on ``dst`` (which
    exists, made like it), one after another (:func:`move_shard`); once ``dst`` could not
    fetch one itself, the others are streamed without asking. Returns how they went."""
    method = "shard-snapshot"
    for shard in shards:
        method = move_shard(src, dst, names, shard, note, pull=method == "shard-snapshot")
    return method


def move_shard(
    src: servers.QdrantServer,
    dst: servers.QdrantServer,
    names: tuple[str, str],
    shard: int,
    note: Callable[[str], None],
    *,
    pull: bool = True,
) -> str:
    """Shard ``shard`` of ``names[0]`` on ``src`` into collection ``names[1]`` on ``dst``
    (which exists, made like it): downloaded by ``dst`` itself where both servers are on
    this host, no byte through this process; streamed through it otherwise: where ``dst``
    runs in a container (the docker runtime's: this host's loopback is not its own), or
    could not reach ``src``. Returns how it went."""
    src_name, dst_name = names
    local = loopback(src.address.host) and loopback(dst.address.host)
    if pull and local and not dst.address.contained:
        try:
            dst.pull_shard(dst_name, shard, src, src_name)
            return "shard-snapshot"
        except RuntimeError as exc:
            if servers.refused(exc):
                raise  # the key may not stream snapshots: the stream would be refused too
            note(
                "one server could not fetch the shard snapshot from the other (in a "
                f"container?), streaming it through omnilab: {exc}"
            )
    with src.shard_snapshot(src_name, shard) as chunks:
        dst.recover_shard(dst_name, shard, chunks)
    return "shard-snapshot via omnilab"


def loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
