"""Points copied between servers at the wire level (:func:`servers.point_struct_bytes`):
the bytes a read point's checksum is computed over become the point written, with no
message built. Checked against building the ``PointStruct`` messages field by field, for
every kind of id, vector and payload, and end to end between two real servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from qdrant_client import grpc as qg
from qdrant_client import models

from omnilab import Qdrant, Stack
from omnilab.progress import QuietReporter
from omnilab.services.promotable import Progress
from omnilab.services.qdrant import servers, transfer
from tests.support.promotion_support import Production

Q = QuietReporter()


def value(x: Any) -> qg.Value:
    if x is None:
        return qg.Value(null_value=qg.NullValue.NULL_VALUE)
    if isinstance(x, bool):
        return qg.Value(bool_value=x)
    if isinstance(x, int):
        return qg.Value(integer_value=x)
    if isinstance(x, float):
        return qg.Value(double_value=x)
    if isinstance(x, str):
        return qg.Value(string_value=x)
    if isinstance(x, list):
        return qg.Value(list_value=qg.ListValue(values=[value(v) for v in x]))
    return qg.Value(struct_value=qg.Struct(fields={k: value(v) for k, v in x.items()}))


PAYLOAD = {
    "title": "doc ü 7",
    "n": -3,
    "big": 2**40,
    "score": 0.125,
    "ok": True,
    "none": None,
    "tags": ["a", 1, None, {"deep": [1.5]}],
    "meta": {"b": {"c": "d"}, "a": []},
}


def retrieved() -> list[Any]:
    """Read points as a server returns them: ids of both kinds, one dense vector, named
    dense, sparse and multi-vectors, payloads from empty to nested; a shard key and an
    order value, which a point to write does not carry."""
    dense = qg.VectorOutput(dense=qg.DenseVector(data=[0.5, -1.0, 3.25, 1e-30]))
    sparse = qg.VectorOutput(sparse=qg.SparseVector(values=[0.5, 2.0], indices=[3, 700]))
    multi = qg.VectorOutput(
        multi_dense=qg.MultiDenseVector(vectors=[qg.DenseVector(data=[1.0, 2.0])] * 3)
    )
    named = qg.VectorsOutput(vectors=qg.NamedVectorsOutput(vectors={"text": dense, "kw": sparse}))
    return [
        qg.RetrievedPoint(id=qg.PointId(num=7), vectors=qg.VectorsOutput(vector=dense)),
        qg.RetrievedPoint(
            id=qg.PointId(uuid=str(uuid.UUID(int=12345))),
            payload={k: value(v) for k, v in PAYLOAD.items()},
            vectors=named,
        ),
        qg.RetrievedPoint(
            id=qg.PointId(num=2**63 + 5),
            payload={"x" * 300: value("y" * 70_000)},  # lengths of several varint bytes
            vectors=qg.VectorsOutput(vectors=qg.NamedVectorsOutput(vectors={"m": multi})),
            shard_key=qg.ShardKey(keyword="eu"),
            order_value=qg.OrderValue(int=4),
        ),
        qg.RetrievedPoint(id=qg.PointId(num=0)),
    ]


def test_the_wire_level_point_is_the_message_built_field_by_field() -> None:
    for point in retrieved():
        built = qg.PointStruct(id=point.id)
        built.payload.MergeFrom(point.payload)
        if point.HasField("vectors"):
            built.vectors.MergeFromString(point.vectors.SerializeToString())
        data = point.SerializeToString(deterministic=True)
        assert qg.PointStruct.FromString(servers.point_struct_bytes(data)) == built


def test_checksums_hash_each_points_serialization_by_the_method_they_name() -> None:
    """XXH3 by default; BLAKE2b for a checksum recorded as ``grpc-protobuf`` before XXH3,
    which a later check must compute the same way to compare with it."""
    import hashlib

    import xxhash

    points = retrieved()
    data = [p.SerializeToString(deterministic=True) for p in points]
    for method, hash_ in (
        ("grpc-xxh3", xxhash.xxh3_64_intdigest),
        ("grpc-protobuf", lambda d: int.from_bytes(hashlib.blake2b(d, digest_size=8).digest())),
    ):
        digest = servers.Digest() if method == servers.METHOD else servers.Digest(method)
        digest.add(points[:2])
        digest.add(points[2:])  # pages in any order sum the same
        expected = sum(hash_(d) for d in data) % 2**64
        assert digest.checksum() == {"points": 4, "sum": f"{expected:016x}", "method": method}
    assert servers.METHOD == "grpc-xxh3"


def test_an_unknown_field_of_any_wire_type_is_dropped() -> None:
    """A newer server may add fields: a varint (field 7), fixed 64 and 32 bits (8, 9)."""
    point = retrieved()[1]
    extra = bytes([7 << 3 | 0, 0x96, 0x01]) + bytes([8 << 3 | 1]) + b"\0" * 8
    extra += bytes([9 << 3 | 5]) + b"\1" * 4
    data = point.SerializeToString(deterministic=True) + extra
    plain = servers.point_struct_bytes(point.SerializeToString(deterministic=True))
    assert servers.point_struct_bytes(data) == plain


@pytest.fixture(name="target")
def target_fixture() -> Iterator[Stack]:
    with Stack(Qdrant(embedded=False), runtime="local", reporter=Q) as stack:
        yield stack


def test_points_of_every_kind_copied_between_two_servers(
    production: Production, target: Stack
) -> None:
    client = production.qdrant()
    name = "kinds"
    client.create_collection(
        name,
        vectors_config={"text": models.VectorParams(size=4, distance=models.Distance.DOT)},
        sparse_vectors_config={"kw": models.SparseVectorParams()},
    )
    points = [
        models.PointStruct(
            id=str(uuid.UUID(int=i)) if i % 2 else i,
            vector={
                "text": [i / 7, -1.0, 0.5, 3.0],
                "kw": models.SparseVector(indices=[i, 1000 + i], values=[0.5, 1.5]),
            },
            payload={**PAYLOAD, "i": i} if i % 3 else {},
        )
        for i in range(5000)
    ]
    client.upsert(name, points, wait=True)
    source = servers.QdrantServer(
        servers.Address(
            production.qdrant_url, int(os.environ["QDRANT_GRPC_PORT"]), production.qdrant_api_key
        )
    )
    endpoint = target.endpoint("qdrant")
    address = transfer.source_address(endpoint)
    assert address is not None
    dst = servers.QdrantServer(address)
    try:
        transfer.create_like(target.qdrant, name, client, name)
        read = transfer.copy_pages(source.scan(name), dst, name, Progress(Q, name, 5000, "points"))
        assert read["points"] == 5000
        assert dst.digest(name) == read == source.digest(name)
        ids = [0, str(uuid.UUID(int=1)), 2, 4999]
        mine = client.retrieve(name, ids, with_vectors=True, with_payload=True)
        theirs = target.qdrant.retrieve(name, ids, with_vectors=True, with_payload=True)
        assert theirs == mine
    finally:
        source.close()
        dst.close()
        client.close()
