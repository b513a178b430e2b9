"""Forking Qdrant collections from production into a run's Qdrant.

Promotion's point copy in the other direction: the run's collection is created with
production's configuration and payload indexes (:func:`.transfer.create_like`), then
production's points are read a page at a time (gRPC ``Scroll`` between servers, as
:meth:`.servers.QdrantServer.scan`; qdrant-client's ``scroll`` otherwise) and written into
the run's collection. Production gets read calls only (collection info, count, scroll):
a read-only API key (``QDRANT__SERVICE__READ_ONLY_API_KEY``) is enough. Shard snapshots,
which promotion uses between servers of one version, are not: creating one is a write.

**Verification.** Production's checksum is computed from the pages production returned;
the run's, independently, by reading the run's collection in full once the copy is
complete; the same checksum as promotion's (:class:`.servers.Digest` over gRPC, the
client's :func:`.transfer.client_digest` otherwise).

**Consistency.** Each page (2,048 points) is read at one instant; pages follow one
another, with no snapshot of the whole collection (Qdrant has none a reader may take).
A point written in production during the fork is copied as it was when its page was
read, before or after the write; a point added or deleted during the fork is in the copy
if its page was read after the addition or before the deletion.

**Selection.** ``sample=`` keeps a point when a hash of its id and the seed falls under
the fraction; ``limit=`` keeps the first points in the collection's id order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from omnilab.services.forking import Forker, ForkFailed, SeedMissing, connection_error
from omnilab.services.promotable import Sum64
from omnilab.services.qdrant import points, servers, transfer

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from omnilab.services.base import Endpoint
    from omnilab.services.promotable import Progress, Promotable, Selection


def _grpc_id(point: Any) -> bytes:
    """A point's id as text (the same for gRPC and client replies), for ``sample=``."""
    if point.id.HasField("num"):
        return str(point.id.num).encode()
    return str(point.id.uuid).encode()


def _selected(
    pages: Iterator[Sequence[Any]], selection: Selection, ident: Any
) -> Iterator[Sequence[Any]]:
    """The pages of a scan, less what the selection leaves out; stops at ``limit``."""
    left = selection.limit
    for page in pages:
        kept = [p for p in page if selection.keeps(ident(p))] if selection.sample else page
        if left is not None:
            kept = kept[:left]
            left -= len(kept)
        if kept:
            yield kept
        if left is not None and left <= 0:
            return


#: Bytes counted per point besides its vectors (id, payload, index entries), for a fork's
#: size estimate.
_POINT_OVERHEAD = 256


class QdrantForker(Forker):
    consistency = (
        "per page: each page of 2,048 points read at one instant, pages one after another, "
        "with no snapshot of the whole collection"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = self.settings.qdrant_url
        self._prod: QdrantClient | None = None
        self._server: servers.QdrantServer | None = None
        self._server_asked = False

    @property
    def prod(self) -> QdrantClient:

        if self._prod is None:
            self._prod = transfer.production_client(self.settings)
        return self._prod

    def prod_server(self) -> servers.QdrantServer | None:
        """Production over gRPC, or None (local mode, or its gRPC port does not answer)."""

        if not self._server_asked:
            self._server_asked = True
            address = transfer.production_address(self.settings)
            if address is not None:
                server = servers.QdrantServer(address)
                if server.grpc_version() is None:
                    server.close()
                else:
                    self._server = server
        return self._server

    def close(self) -> None:
        if self._prod is not None:
            self._prod.close()
            self._prod = None
        if self._server is not None:
            self._server.close()
            self._server = None

    def _reading(self, item: Promotable, action: Any) -> Any:
        """Production's answer, with its failures as one line: a missing collection is
        :class:`SeedMissing`, an unreachable server or a refused key names the URL."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            return action()
        except UnexpectedResponse as exc:
            if exc.status_code == 404:
                raise SeedMissing(
                    f"seed {item.label}: production Qdrant "
                    f"({item.production_url(self.settings)}) has no collection or alias "
                    f"{item.target}"
                ) from None
            if exc.status_code in (401, 403):
                raise connection_error(
                    "Qdrant", self.url, f"credentials refused (HTTP {exc.status_code})"
                ) from None
            raise connection_error("Qdrant", self.url, str(exc)) from None
        except ResponseHandlingException as exc:
            raise connection_error("Qdrant", self.url, str(exc.source or exc)) from None

    # -- check ------------------------------------------------------------------------------

    def check(self) -> dict[str, int]:

        counts = {}
        for item in self.items:
            info = self._reading(item, lambda item=item: self.prod.get_collection(item.target))
            total = self._reading(
                item, lambda item=item: self.prod.count(item.target, exact=True).count
            )
            chosen = item.selection
            expected = round(total * chosen.sample) if chosen.sample is not None else total
            if chosen.limit is not None:
                expected = min(expected, chosen.limit)
            counts[item.label] = int(expected)
            # Vectors as float32, and a little for each point's id and payload.
            dimensions = sum(transfer.dimensions(info.config.params).values())
            self.sizes[item.label] = int(expected) * (4 * dimensions + _POINT_OVERHEAD)
        return counts

    # -- copy -------------------------------------------------------------------------------

    def copy(self, item: Promotable, target: Endpoint, progress: Progress) -> dict[str, Any]:
        from omnilab.services.qdrant.service import Qdrant

        run = Qdrant().client(target)
        run_address = transfer.source_address(target)
        run_server = servers.QdrantServer(run_address) if run_address is not None else None
        try:
            began = time.monotonic()
            self._reading(
                item, lambda: transfer.create_like(run, item.name, self.prod, item.target)
            )
            total = self._reading(item, lambda: self.prod.count(item.target, exact=True).count)
            prod_server = self.prod_server()
            if prod_server is not None and run_server is not None:
                ours = self._copy_between_servers(item, prod_server, run_server, progress)
                done = time.monotonic()
                theirs = run_server.digest(item.name)
            else:
                ours = self._copy_through_client(item, run, progress)
                done = time.monotonic()
                theirs = transfer.client_digest(run, item.name)
        finally:
            run.close()
            if run_server is not None:
                run_server.close()
        provenance = {
            "production": {
                "collection": item.target,
                "points": total,
                "selected": ours["points"],
                "checksum": ours,
            },
            "run": {"collection": item.name, "points": theirs["points"], "checksum": theirs},
            "seconds": {
                "copy": round(done - began, 4),
                "verify": round(time.monotonic() - done, 4),
            },
        }
        if theirs != ours:
            raise ForkFailed(
                f"seed {item.label}: the run's copy differs from what production returned "
                f"({theirs['points']:,} points of {ours['points']:,})"
            )
        return provenance

    def production_checksum(
        self, item: Promotable, recorded: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The checksum of the points the seed selects now, by the method the fork used
        (over gRPC, or through qdrant-client), from scroll calls alone."""

        try:
            self._reading(item, lambda: self.prod.get_collection(item.target))
        except SeedMissing:
            return None
        server = self.prod_server()
        if recorded.get("method") == servers.METHOD and server is not None:
            digest = servers.Digest()
            for page in _selected(server.scan(item.target), item.selection, _grpc_id):
                digest.add(page)
            return digest.checksum()
        payloads, vectors = Sum64(), Sum64()
        pages = self._reading(item, lambda: transfer.scroll(self.prod, item.target))
        for page in _selected(pages, item.selection, lambda p: str(p.id).encode()):
            points.add_digests(page, payloads, vectors)
        return transfer.checksum(payloads, vectors)

    def _copy_between_servers(
        self,
        item: Promotable,
        prod: servers.QdrantServer,
        run: servers.QdrantServer,
        progress: Progress,
    ) -> dict[str, Any]:
        """Production's pages into the run's server (:func:`.transfer.copy_pages`, as
        promotion's point copy); returns the checksum of the pages copied."""
        pages = _selected(prod.scan(item.target), item.selection, _grpc_id)
        return transfer.copy_pages(pages, run, item.name, progress)

    def _copy_through_client(
        self, item: Promotable, run: QdrantClient, progress: Progress
    ) -> dict[str, Any]:
        """The same through qdrant-client (local mode on either side, or no gRPC)."""
        from qdrant_client import models

        payloads, vectors = Sum64(), Sum64()
        pages = self._reading(item, lambda: transfer.scroll(self.prod, item.target))
        for page in _selected(pages, item.selection, lambda p: str(p.id).encode()):
            run.upsert(
                item.name,
                [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in page],
                wait=True,
            )
            points.add_digests(page, payloads, vectors)
            progress.advance(len(page))
        return transfer.checksum(payloads, vectors)
