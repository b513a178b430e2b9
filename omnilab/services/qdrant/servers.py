"""Reading and copying collections between two Qdrant servers, without qdrant-client's models.

qdrant-client turns every point it reads into pydantic models of Python floats: reading
100,000 points of 384 dimensions costs it about 30 s of CPU, and a promotion reads each
side once. Here points travel as the servers' own protobuf messages over gRPC and are
checksummed from their serialized bytes, so the Python side does one C call per point:

- :meth:`QdrantServer.digest` reads a collection page by page and sums a hash of each
  point: its id, payload and vectors as serialized deterministically (map entries sorted,
  floats as the stored float32 bits). Two servers holding the same points give the same
  sum whatever the order they return them in (``Sum64``).
- :meth:`QdrantServer.pull_shard` has production download a shard's snapshot from the
  source as the source builds it (``GET /collections/{name}/shards/{id}/snapshot``) into a
  collection's shard: segments, payload indexes and the HNSW graph are copied as files,
  so production does not index the points again. Where production cannot reach the
  source, :meth:`QdrantServer.shard_snapshot` and :meth:`QdrantServer.recover_shard` pass
  the same stream through omnilab.
- :func:`point_struct_bytes` turns a point read from one server into a point to write
  to another at the wire level, from the bytes its checksum was computed over: no
  message is built, no float decoded.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import xxhash

if TYPE_CHECKING:
    import grpc
    import httpx

#: How a checksum of this module is computed, recorded beside it: a checksum is only ever
#: compared with one computed the same way. Each point's serialization is hashed by
#: XXH3 (64 bits), a non-cryptographic hash made for checksums: 100,000 points of 384
#: dimensions (160 MB) take it 0.01 s of CPU where BLAKE2b took 0.22 s, which was more
#: than reading and serializing the points.
METHOD = "grpc-xxh3"
#: Every method by its recorded name, with its 8-byte hash: ``grpc-protobuf`` (BLAKE2b)
#: was recorded before XXH3, and a run's provenance or a promotion's record that names
#: it is checked again the same way.
HASHES: dict[str, Callable[[bytes], bytes]] = {
    "grpc-xxh3": xxhash.xxh3_64_digest,
    "grpc-protobuf": lambda data: blake2b(data, digest_size=8).digest(),
}
#: Points per gRPC page: 2,048 points of 384 dimensions are a 3 MB message.
PAGE = 2048
#: gRPC messages have no size limit here (a page of large vectors may pass 4 MB), and
#: only identity encoding is accepted: Qdrant gzips every reply to a client that accepts
#: gzip, which costs it ten times the CPU of reading the points (a loopback or LAN link
#: does not need it).
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.compression_enabled_algorithms_bitset", 1),
]


@dataclass(frozen=True)
class Address:
    """Where a Qdrant server answers: its HTTP base URL, its gRPC port, its API key."""

    url: str
    grpc_port: int
    api_key: str | None = None
    #: In a container of its own network: it cannot reach a server on this host's loopback.
    contained: bool = False

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")


class QdrantServer:
    """HTTP and gRPC connections to one Qdrant server."""

    def __init__(self, address: Address, *, timeout: float = 600) -> None:
        import grpc
        import httpx
        from qdrant_client import grpc as qg

        self.address = address
        headers = {"api-key": address.api_key} if address.api_key else {}
        # identity: the server would otherwise gzip a snapshot stream, at its CPU's cost.
        self.http: httpx.Client = httpx.Client(
            base_url=address.url.rstrip("/"),
            headers={**headers, "accept-encoding": "identity"},
            timeout=timeout,
        )
        target = f"{address.host}:{address.grpc_port}"
        self._channel: grpc.Channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=_CHANNEL_OPTIONS)
            if address.tls
            else grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        )
        self._metadata = tuple(headers.items())
        self._timeout = timeout
        self.points = qg.PointsStub(self._channel)
        self._upsert_raw: Any = None
        self._service = qg.QdrantStub(self._channel)

    def close(self) -> None:
        self.http.close()
        self._channel.close()

    def __enter__(self) -> QdrantServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the server is ---------------------------------------------------------------

    def version(self) -> str:
        response = self.http.get("/")
        response.raise_for_status()
        return str(response.json().get("version", "?"))

    def grpc_version(self, timeout: float = 3.0) -> str | None:
        """The version the gRPC port reports, or None when nothing answers there."""
        import grpc
        from qdrant_client import grpc as qg

        try:
            reply = self._service.HealthCheck(
                qg.HealthCheckRequest(), metadata=self._metadata, timeout=timeout
            )
        except grpc.RpcError:
            return None
        return str(reply.version)

    def shards(self, name: str) -> list[int] | None:
        """Ids of the collection's shards when all of them are on this server (a single
        node), else None."""
        response = self.http.get(f"/collections/{name}/cluster")
        response.raise_for_status()
        info = response.json()["result"]
        if info.get("remote_shards") or info.get("shard_transfers"):
            return None
        local = info.get("local_shards") or []
        if any(s.get("state") != "Active" for s in local):
            return None
        return sorted(int(s["shard_id"]) for s in local)

    # -- reading --------------------------------------------------------------------------

    def scan(self, name: str, *, page: int = PAGE) -> Iterator[Sequence[Any]]:
        """Every point of ``name`` with payload and vectors, a page (protobuf
        ``RetrievedPoint``s) at a time, in id order.

        The next page is asked for as soon as a page arrives, before the caller uses it:
        the server reads and serializes one page while Python hashes the one before,
        instead of each waiting for the other (on two cores, the verification's time
        is nearly halved).
        """
        from qdrant_client import grpc as qg

        def ask(offset: Any) -> Any:
            request = qg.ScrollPoints(
                collection_name=name,
                limit=page,
                offset=offset,
                with_payload=qg.WithPayloadSelector(enable=True),
                with_vectors=qg.WithVectorsSelector(enable=True),
            )
            return self.points.Scroll.future(
                request, metadata=self._metadata, timeout=self._timeout
            )

        pending = ask(None)
        try:
            while True:
                reply = pending.result()
                more = reply.HasField("next_page_offset")
                if more:
                    pending = ask(reply.next_page_offset)
                if reply.result:
                    yield reply.result
                if not more:
                    return
        finally:
            pending.cancel()  # the reader stopped early: no page is read for nobody

    def digest(self, name: str, progress: Any = None, method: str = METHOD) -> dict[str, Any]:
        """The checksum of every point of ``name``, read from this server alone."""
        digest = Digest(method)
        for points in self.scan(name):
            digest.add(points)
            if progress is not None:
                progress(len(points))
        return digest.checksum()

    # -- writing --------------------------------------------------------------------------

    def upsert_serialized(self, name: str, points: Sequence[bytes]) -> None:
        """Upsert points given as serialized ``PointStruct``s (:func:`point_struct_bytes`):
        the request is framed around them, never parsed into messages in this process."""
        from qdrant_client import grpc as qg

        head = qg.UpsertPoints(collection_name=name, wait=True).SerializeToString()
        # Field 3 (points), length-delimited: tag 0x1a, then each point's length.
        body = b"".join([b"\x1a" + _varint(len(p)) + p for p in points])
        if self._upsert_raw is None:
            self._upsert_raw = self._channel.unary_unary(
                "/qdrant.Points/Upsert",
                request_serializer=None,
                response_deserializer=qg.PointsOperationResponse.FromString,
            )
        self._upsert_raw(head + body, metadata=self._metadata, timeout=self._timeout)

    # -- shard snapshots ------------------------------------------------------------------

    @contextlib.contextmanager
    def shard_snapshot(self, name: str, shard: int) -> Iterator[Iterator[bytes]]:
        """The shard's snapshot (a tar archive) as the server writes it, in chunks."""
        with self.http.stream("GET", f"/collections/{name}/shards/{shard}/snapshot") as response:
            _raise_for(response)
            yield response.iter_raw(1 << 20)

    def recover_shard(self, name: str, shard: int, chunks: Iterable[bytes]) -> None:
        """Replace shard ``shard`` of the (existing) collection ``name`` with the snapshot
        streamed in ``chunks``; returns when the server has loaded it."""
        self._upload(f"/collections/{name}/shards/{shard}/snapshots/upload", chunks)

    def pull_shard(self, name: str, shard: int, source: QdrantServer, source_name: str) -> None:
        """Replace shard ``shard`` of ``name`` with the same shard of ``source_name`` on
        ``source``, which this server downloads itself as ``source`` streams it (with
        ``source``'s API key): no byte passes through omnilab."""
        body: dict[str, Any] = {
            "location": f"{source.address.url}/collections/{source_name}/shards/{shard}/snapshot",
            "priority": "snapshot",
        }
        if source.address.api_key:
            body["api_key"] = source.address.api_key
        response = self.http.put(
            f"/collections/{name}/shards/{shard}/snapshots/recover",
            params={"wait": "true"},
            json=body,
        )
        _raise_for(response)

    def recover_collection(self, name: str, chunks: Iterable[bytes]) -> None:
        """Create collection ``name`` from a collection snapshot (configuration included)."""
        self._upload(f"/collections/{name}/snapshots/upload", chunks)

    def _upload(self, path: str, chunks: Iterable[bytes]) -> None:
        boundary = uuid.uuid4().hex

        def body() -> Iterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="snapshot"; '
                'filename="omnilab.snapshot"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            yield from chunks
            yield f"\r\n--{boundary}--\r\n".encode()

        response = self.http.post(
            path,
            params={"wait": "true", "priority": "snapshot"},
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
            content=body(),
        )
        _raise_for(response)

    @contextlib.contextmanager
    def collection_snapshot(self, name: str) -> Iterator[Iterator[bytes]]:
        """A snapshot of the whole collection (configuration and every shard), created on
        the server, streamed, and deleted from the server afterwards."""
        response = self.http.post(f"/collections/{name}/snapshots", params={"wait": "true"})
        _raise_for(response)
        snapshot = response.json()["result"]["name"]
        try:
            with self.http.stream("GET", f"/collections/{name}/snapshots/{snapshot}") as data:
                _raise_for(data)
                yield data.iter_raw(1 << 20)
        finally:
            with contextlib.suppress(Exception):
                self.http.delete(f"/collections/{name}/snapshots/{snapshot}")


class Refused(RuntimeError):
    """The server would not let this key do it (HTTP 401 or 403)."""


def refused(error: BaseException) -> bool:
    """Whether ``error`` is a key refused, by the server asked or by the server it
    downloaded from for us (a snapshot recovered from a URL): a read-only key may read
    points and not stream snapshots, and asking again another way would not change it."""
    text = str(error)
    return isinstance(error, Refused) or any(
        f"status - {code}" in text for code in ("401 Unauthorized", "403 Forbidden")
    )


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()
    try:
        detail = response.json()["status"]["error"]
    except Exception:
        detail = response.text[:200]
    kind = Refused if response.status_code in (401, 403) else RuntimeError
    raise kind(f"qdrant {response.request.method} {response.url.path}: {detail}")


class Digest:
    """The checksum of a set of points, whatever the order they are added in.

    Each point (protobuf ``RetrievedPoint``: id, payload, vectors) is serialized
    deterministically (map entries sorted: a server returns a payload's keys in any
    order) and hashed; the hashes are summed modulo 2**64, a page at a time as one array
    (as :class:`~omnilab.services.promotable.Sum64` does one by one).
    """

    def __init__(self, method: str = METHOD) -> None:
        self.total = 0
        self.points = 0
        self.method = method
        self._hash = HASHES[method]

    def add(self, points: Sequence[Any]) -> list[bytes]:
        """Add a page; returns each point's deterministic serialization (which a copy
        turns into the points to write: :func:`point_struct_bytes`)."""
        serialized = [p.SerializeToString(deterministic=True) for p in points]
        hash_ = self._hash
        hashes = b"".join([hash_(data) for data in serialized])
        page = int(np.frombuffer(hashes, dtype=">u8").sum(dtype=np.uint64))
        self.total = (self.total + page) & 0xFFFF_FFFF_FFFF_FFFF
        self.points += len(points)
        return serialized

    def checksum(self) -> dict[str, Any]:
        return {"points": self.points, "sum": f"{self.total:016x}", "method": self.method}


def point_digests(points: Sequence[Any]) -> dict[str, int]:
    """Each point's 64-bit digest (its deterministic serialization, as :class:`Digest`
    hashes it) by its id as text: a diff's per-point terms, over gRPC."""
    out = {}
    for p in points:
        ident = str(p.id.num) if p.id.HasField("num") else str(p.id.uuid)
        data = p.SerializeToString(deterministic=True)
        out[ident] = xxhash.xxh3_64_intdigest(data)
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def point_struct_bytes(retrieved: bytes) -> bytes:
    """A serialized ``RetrievedPoint`` as a serialized ``PointStruct``, at the wire level.

    The two number their fields alike but for the payload (2 in one, 3 in the other),
    and ``VectorsOutput`` and ``Vectors`` (and the vectors inside them) number theirs
    alike. So the id (1) and vectors (4) are kept as they are, each payload entry gets
    the tag of field 3, and the rest (shard key, order value, any field a newer server
    adds) is dropped. This costs a fifth of building ``PointStruct`` messages and
    serializing them again (100,000 points of 384 dimensions: 0.4 s of CPU against
    1.6 s), which was the largest part of a fork's own CPU for a collection.
    ``tests/services/qdrant/test_point_bytes.py`` compares the two for every kind of id,
    vector and payload.
    """
    out = []
    i, n = 0, len(retrieved)
    while i < n:
        start = i
        key = 0
        shift = 0
        while True:
            byte = retrieved[i]
            i += 1
            key |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        wire = key & 7
        if wire == 2:
            length = 0
            shift = 0
            while True:
                byte = retrieved[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            i += length
        elif wire == 0:
            while retrieved[i] >= 0x80:
                i += 1
            i += 1
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        field = key >> 3
        if field == 2:
            out.append(b"\x1a" + retrieved[start + 1 : i])  # tag 0x12 is one byte
        elif field in (1, 4):
            out.append(retrieved[start:i])
    return b"".join(out)
