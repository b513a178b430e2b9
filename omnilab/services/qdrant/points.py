"""Comparing and checksumming Qdrant points, a batch at a time.

Vectors are compared with a tolerance, as arrays: a collection's 100,000 points of 384
dimensions are 38 million numbers, too many for Python loops. Vectors of a cosine space
are compared as unit vectors: servers normalise them on write, and qdrant-client's local
mode returns them normalised or as given depending on whether the collection was just
written or read back from disk. Checksums are exact (the stored float32 bytes), so they
can later tell whether production still holds what was promoted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

#: How far a component may move when a server normalises a vector again (cosine).
RTOL, ATOL = 1e-5, 1e-6


class PointsDiffer(Exception):
    """Two points with the same id differ; the message says which and how."""


def payload_bytes(point_id: Any, payload: Any) -> bytes:
    return json.dumps([str(point_id), payload], sort_keys=True, separators=(",", ":")).encode()


def vector_items(vector: Any) -> Iterator[tuple[str, Any]]:
    """(name, value) of a point's vectors, whatever their form (one, named, sparse, multi)."""
    if vector is None:
        return
    if isinstance(vector, dict):
        for name in sorted(vector):
            yield name, vector[name]
    else:
        yield "", vector


def _is_sparse(value: Any) -> bool:
    return hasattr(value, "indices")


def _is_multi(value: Any) -> bool:
    return bool(value) and isinstance(value[0], list)


def vector_bytes(point_id: Any, vector: Any) -> bytes:
    parts = [str(point_id).encode()]
    for name, value in vector_items(vector):
        if _is_sparse(value):
            data = np.asarray(value.indices, np.int64).tobytes()
            data += np.asarray(value.values, np.float32).tobytes()
        else:
            data = np.asarray(value, np.float32).tobytes()
        parts.append(name.encode() + b"=" + data)
    return b"\0".join(parts)


def add_digests(batch: Sequence[Any], payloads: Any, vectors: Any) -> None:
    """Add a batch's points to the payload and vector checksums (``Sum64``s).

    The same bytes as :func:`payload_bytes` and :func:`vector_bytes`; a batch of plain
    vectors is converted to float32 in one array rather than point by point.
    """
    for p in batch:
        payloads.add(payload_bytes(p.id, p.payload))
    plain = all(isinstance(p.vector, list) and not _is_multi(p.vector) for p in batch)
    if batch and plain and len({len(p.vector) for p in batch}) == 1:
        rows = np.asarray([p.vector for p in batch], np.float32)
        for p, row in zip(batch, rows, strict=True):
            vectors.add(str(p.id).encode() + b"\0=" + row.tobytes())
        return
    for p in batch:
        vectors.add(vector_bytes(p.id, p.vector))


def point_digests(batch: Sequence[Any]) -> dict[str, int]:
    """Each point's 64-bit digest (of the bytes :func:`payload_bytes` and
    :func:`vector_bytes` make of it) by its id as text: a diff's per-point terms, through
    qdrant-client."""
    out = {}
    for p in batch:
        data = payload_bytes(p.id, p.payload) + b"\0\0" + vector_bytes(p.id, p.vector)
        out[str(p.id)] = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
    return out


def compare(originals: Sequence[Any], copies: Sequence[Any], cosine: frozenset[str]) -> float:
    """Check copies against originals (same ids, in the same order); returns the largest
    vector difference, or raises :class:`PointsDiffer`."""
    left_items = [dict(vector_items(p.vector)) for p in originals]
    right_items = [dict(vector_items(p.vector)) for p in copies]
    for original, copy, x, y in zip(originals, copies, left_items, right_items, strict=True):
        if original.payload != copy.payload:
            raise PointsDiffer(f"point {copy.id}: payloads differ")
        if x.keys() != y.keys():
            raise PointsDiffer(f"point {copy.id}: vector names differ")
    if not copies:
        return 0.0
    worst = 0.0
    for name in right_items[0]:
        a = [v[name] for v in left_items]
        b = [v[name] for v in right_items]
        if any(_is_sparse(v) or _is_multi(v) for v in (*a, *b)):
            for point, x, y in zip(copies, a, b, strict=True):
                worst = max(worst, _compare_one(point.id, x, y))
            continue
        if len({len(v) for v in (*a, *b)}) != 1:
            raise PointsDiffer(f"vector {name!r}: dimensions differ")
        left, right = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if name in cosine:
            left, right = _unit_rows(left), _unit_rows(right)
        diff = np.abs(left - right)
        bad = diff > ATOL + RTOL * np.abs(right)
        if bad.any():
            index = int(np.argwhere(bad)[0][0])
            raise PointsDiffer(f"point {copies[index].id}: vectors differ")
        worst = max(worst, float(diff.max(initial=0.0)))
    return worst


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(rows, norms, out=rows.copy(), where=norms > 1e-12)
    return unit


def _compare_one(point_id: Any, a: Any, b: Any) -> float:
    if _is_sparse(a) != _is_sparse(b):
        raise PointsDiffer(f"point {point_id}: vector kinds differ")
    if _is_sparse(a):
        if list(a.indices) != list(b.indices):
            raise PointsDiffer(f"point {point_id}: sparse indices differ")
        a, b = a.values, b.values
    left, right = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if left.shape != right.shape:
        raise PointsDiffer(f"point {point_id}: vector shapes differ")
    diff = np.abs(left - right)
    if (diff > ATOL + RTOL * np.abs(right)).any():
        raise PointsDiffer(f"point {point_id}: vectors differ")
    return float(diff.max(initial=0.0))
