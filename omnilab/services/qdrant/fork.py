"""Forking Qdrant collections from production into a run's Qdrant.

Promotion's point copy in the other direction: the run's collection is created with
production's configuration and payload indexes (:func:`.transfer.create_like`), then
production's points are read a page at a time (gRPC ``Scroll`` between servers, as
:meth:`.servers.QdrantServer.scan`; qdrant-client's ``scroll`` otherwise) and written into
the run's collection. Production gets read calls only (collection info, count, scroll):
a read-only API key (``QDRANT__SERVICE__READ_ONLY_API_KEY``) is enough. Between servers
the points travel as bytes (:func:`.transfer.copy_pages`), and the fork cache keeps
snapshots of the *run's* verified collection (:class:`_Between`).

**Shard snapshots.** Where production's key may stream them (Qdrant asks for manage
access even for that ``GET``; a read-only key is refused), a whole collection between two
servers of one version moves as its shards' snapshots instead: the run's server downloads
each one itself (``GET /collections/{name}/shards/{id}/snapshot``, which Qdrant builds as
it sends, writing nothing on production's disk and changing nothing there), while this
process reads production's points for its checksum. Copying segment files costs the run's
server far less than re-ingesting every point. A snapshot is of one instant and the
checksum's read comes after it: if production was written between the two, the checksums
differ and the points are copied after all (so what the run gets is always what the
checksum read). A refused key, a ``limit=``/``sample=`` seed, servers of two versions or
shards on other nodes take the point copy.

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

import contextlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from omnilab.redact import redact_url
from omnilab.services.forking import Forker, ForkFailed, SeedMissing, connection_error
from omnilab.services.promotable import Sum64, in_background, pause_point
from omnilab.services.qdrant import points, servers, transfer

if TYPE_CHECKING:
    from pathlib import Path

    from qdrant_client import QdrantClient

    from omnilab.services.base import Endpoint
    from omnilab.services.fork_cache import ForkCache
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
        from omnilab.services.fork_cache import ForkCache
        from omnilab.services.qdrant.service import Qdrant

        run = Qdrant().client(target)
        run_address = transfer.source_address(target)
        run_server = servers.QdrantServer(run_address) if run_address is not None else None
        new_entry = contextlib.ExitStack()
        try:
            began = time.monotonic()
            total = self._reading(item, lambda: self.prod.count(item.target, exact=True).count)
            prod_server = self.prod_server()
            if prod_server is not None and run_server is not None:
                cache = ForkCache.from_settings(self.settings)
                between = _Between(self, item, prod_server, run_server, run, cache)
                ours, theirs, cached, done = between.copy(progress, new_entry)
            else:
                self._reading(
                    item, lambda: transfer.create_like(run, item.name, self.prod, item.target)
                )
                ours = self._copy_through_client(item, run, progress)
                done = time.monotonic()
                theirs = transfer.client_digest(run, item.name)
                cached = {"served": False, "stored": False, "off": "local mode is not cached"}
            if theirs != ours:
                raise ForkFailed(
                    f"seed {item.label}: the run's copy differs from what production returned "
                    f"({theirs['points']:,} points of {ours['points']:,})"
                )
            verified = time.monotonic()
            method = cached.pop("method", "points")
            if cached.pop("store", False):
                pause_point("caching:qdrant")  # tests: a fork killed while filling
                try:
                    new_entry.close()  # verified: the entry is completed and put in place
                    cached["stored"] = True
                except OSError as exc:
                    self.reporter.note(f"  seed {item.label}: not cached: {exc}")
            else:
                new_entry.__exit__(_NotStored, _NotStored(), None)  # any entry opened goes
        except BaseException:
            new_entry.__exit__(*sys.exc_info())
            raise
        finally:
            run.close()
            if run_server is not None:
                run_server.close()
        return {
            "production": {
                "collection": item.target,
                "points": total,
                "selected": ours["points"],
                "checksum": ours,
            },
            "run": {"collection": item.name, "points": theirs["points"], "checksum": theirs},
            # How the points came: "points" (read and written), "shard-snapshot" (the
            # run's server downloaded production's shards), "... via omnilab" (streamed).
            "method": method,
            "cache": cached,
            "seconds": {
                "copy": round(done - began, 4),
                "verify": round(verified - done, 4),
                "cache": round(time.monotonic() - verified, 4),
            },
        }

    def identity(self, item: Promotable) -> dict[str, Any]:
        """What names a cache entry, less production's checksum: production's server (its
        URL, no key), the collection and the seed's selection, and the collection's
        configuration (which the run's collection is made like)."""
        info = self._reading(item, lambda: self.prod.get_collection(item.target))
        declared = {k: v for k, v in item.to_dict().items() if k != "name"}
        return {
            "service": "qdrant",
            "server": redact_url(self.url),
            "item": declared,
            "target": item.target,
            "config": info.config.model_dump(mode="json"),
            "payload_schema": {
                k: v.model_dump(mode="json") for k, v in (info.payload_schema or {}).items()
            },
            "method": servers.METHOD,
        }

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
        method = recorded.get("method")
        if method in servers.HASHES and server is not None:
            digest = servers.Digest(method)
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


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            yield chunk


def curl_program() -> str | None:
    """``curl``, which writes a download to a file with no Python in the way."""
    return shutil.which("curl")


class _NotStored(Exception):
    """Drops a cache entry opened for a collection whose snapshots were not written."""


#: A cache entry's files: each shard's snapshot, by shard id.
SHARD_FILE = "shard-{}.snapshot"


class _Between:
    """One seed copied from production's server into the run's, through the fork cache
    where there is one.

    With no entry for this collection (whatever its checksum: the first fork), the points
    are copied (:func:`.transfer.copy_pages`) and production's checksum is the one of the
    pages read; the entry is written while the copy is verified: each shard's snapshot,
    streamed from the run's server (which changes nothing meanwhile) into the cache's
    temporary folder, kept once the run's checksum equals production's. With entries for
    it, production's checksum is computed first (a read of every selected point); an
    entry of that checksum is restored (each shard recovered from its snapshot, no point
    re-ingested) and verified as a copy is; else the points are copied.
    """

    def __init__(
        self,
        forker: QdrantForker,
        item: Promotable,
        prod: servers.QdrantServer,
        run_server: servers.QdrantServer,
        run: QdrantClient,
        cache: ForkCache | None,
    ) -> None:
        self.forker = forker
        self.item = item
        self.prod = prod
        self.run_server = run_server
        self.run = run
        self.cache = cache
        self._curl: subprocess.Popen[bytes] | None = None
        self._curl_stopped = False
        self._curl_lock = threading.Lock()

    def _production(self, progress: Progress | None = None) -> dict[str, Any]:
        digest = servers.Digest()
        for page in _selected(self.prod.scan(self.item.target), self.item.selection, _grpc_id):
            digest.add(page)
            if progress is not None:
                progress.advance(len(page))
        return digest.checksum()

    def _create(self) -> None:
        item = self.item
        self.forker._reading(
            item, lambda: transfer.create_like(self.run, item.name, self.forker.prod, item.target)
        )

    def copy(
        self, progress: Progress, new_entry: contextlib.ExitStack
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], float]:
        """(production's checksum, the run's, the cache record, when the copy ended)."""
        from omnilab.services.fork_cache import cache_key

        item, cache = self.item, self.cache
        identity: dict[str, Any] = {}
        if cache is not None:
            identity = self.forker.identity(item)
            known = [e.key for e in cache.entries() if e.meta.get("identity") == identity]
            if known:
                # The entry most recently used for this collection is loaded while
                # production's checksum is read; it serves only if taken of that checksum.
                production, restored = self._restore(known[0], identity, progress)
                key = cache_key({**identity, "checksum": production})
                if restored is None and key != known[0]:
                    _, restored = self._restore(key, identity, progress, production)
                if restored is not None:
                    return restored
                progress.restart()
        ours, method = self._fill(progress)
        done = time.monotonic()
        record: dict[str, Any] = {"served": False, "stored": False, "method": method}
        folder: Path | None = None
        if cache is None:
            record["off"] = True
        else:
            key = cache_key({**identity, "checksum": ours})
            record["key"] = key[:16]
            meta = {
                "service": "qdrant",
                "kind": item.kind,
                "label": item.label,
                "item": item.to_dict(),
                "url": item.production_url(self.forker.settings),
                "identity": identity,
                "checksum": ours,
                "points": ours["points"],
            }
            try:
                folder = new_entry.enter_context(cache.writing(key, meta))
            except OSError as exc:
                self.forker.reporter.note(f"  seed {item.label}: not cached: {exc}")
        if folder is None:
            theirs = self.run_server.digest(item.name, progress.check)
        else:
            # The verification's read and the snapshots' stream at once: both only read.
            # Interrupted, the stream stops before its folder is removed.
            into = folder
            snapshots = in_background(lambda: self._snapshot(into), "omnilab-fork-cache")
            try:
                theirs = self.run_server.digest(item.name, progress.check)
                progress.wait(snapshots)
            except BaseException:
                self._stop_download()
                raise
            record["store"] = snapshots.result()
        if theirs != ours and method != "points":
            # Production written between its shards' snapshots and the read of its points:
            # the entry (of neither) goes, and the points are copied after all.
            new_entry.__exit__(_NotStored, _NotStored(), None)
            self.forker.reporter.note(
                f"  seed {item.label}: production changed while its shards were copied; "
                "copying its points"
            )
            self.run.delete_collection(item.name)
            self._create()
            progress.restart()
            ours = self.forker._copy_between_servers(item, self.prod, self.run_server, progress)
            done = time.monotonic()
            theirs = self.run_server.digest(item.name)
            record = {"served": False, "stored": False, "method": "points", "recopied": True}
        return ours, theirs, record, done

    def _fill(self, progress: Progress) -> tuple[dict[str, Any], str]:
        """The run's collection created and filled: from production's shard snapshots
        where they may be had (the module's docstring), else by copying its points.
        Returns production's checksum (of the points read) and how it was filled."""
        self._create()
        moved = self._move_shards(progress)
        if moved is not None:
            return moved
        ours = self.forker._copy_between_servers(self.item, self.prod, self.run_server, progress)
        return ours, "points"

    def _move_shards(self, progress: Progress) -> tuple[dict[str, Any], str] | None:
        """Production's shards into the run's collection as snapshots, while production's
        points are read for its checksum; None (the run's collection emptied again) where
        the shards cannot move so: the caller copies the points."""
        item = self.item
        if item.selects:
            return None  # a snapshot holds every point
        try:
            params = self.forker.prod.get_collection(item.target).config.params
            shards = transfer.whole_shards(self.prod, self.run_server, params, item.target)
        except (RuntimeError, httpx.HTTPError):
            return None
        if not shards:
            return None

        def note(text: str) -> None:
            self.forker.reporter.note(f"  seed {item.label}: {text}")

        def move() -> str:
            pause_point("moving:qdrant")  # tests: Ctrl-C while the run's server downloads
            names = (item.target, item.name)
            return transfer.move_shards(self.prod, self.run_server, names, shards, note)

        digest = servers.Digest()
        moving = in_background(move, "omnilab-fork-shards")
        for page in self.prod.scan(item.target):
            if moving.done() and moving.exception() is not None:
                break  # refused or failed: the point copy reads production anyway
            digest.add(page)
            progress.advance(len(page))
        progress.wait(moving)
        error = moving.exception()
        if error is None:
            return digest.checksum(), moving.result()
        if not isinstance(error, RuntimeError | httpx.HTTPError):
            raise error
        if not servers.refused(error):
            note(f"shard snapshots did not load ({error}); copying the points")
        # A refused key is the usual read-only one: its point copy needs no word.
        self.run.delete_collection(item.name)
        self._create()
        progress.restart()
        return None

    def _snapshot(self, folder: Path) -> bool:
        """Each shard of the run's collection, streamed into the entry's folder; False
        when it could not be (a full disk, shards on other nodes): no fork fails for it."""
        try:
            shards = self.run_server.shards(self.item.name)
            if not shards:
                return False
            for shard in shards:
                path = folder / SHARD_FILE.format(shard)
                if not self._download(shard, path):
                    with (
                        self.run_server.shard_snapshot(self.item.name, shard) as chunks,
                        path.open("wb") as out,
                    ):
                        for chunk in chunks:
                            out.write(chunk)
        except (OSError, RuntimeError, httpx.HTTPError) as exc:
            self.forker.reporter.note(f"  seed {self.item.label}: not cached: {exc}")
            return False
        return True

    def _download(self, shard: int, path: Path) -> bool:
        """The shard's snapshot written into ``path`` by ``curl``, where it is installed;
        False otherwise (or if it failed), for the stream through httpx to do it.

        Qdrant sends a snapshot in many small chunks, each parsed in Python by httpx:
        165 MiB cost this process 0.9 s of CPU, taken from the other services' copies
        running beside it; ``curl`` costs it none. The API key goes by ``curl``'s
        standard input (``-H @-``), never on its command line."""
        program = curl_program()
        if program is None:
            return False
        address = self.run_server.address
        url = f"{address.url.rstrip('/')}/collections/{self.item.name}/shards/{shard}/snapshot"
        header = f"api-key: {address.api_key}\n" if address.api_key else ""
        with self._curl_lock:
            if self._curl_stopped:
                return True  # stopped: nothing more is written, and the entry goes
            self._curl = subprocess.Popen(
                [program, "-sS", "--fail", "-H", "@-", "-o", str(path), url],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self._curl.communicate(header.encode())
        return self._curl.returncode == 0 or self._curl_stopped

    def _stop_download(self) -> None:
        """The fork was interrupted while its entry was written: ``curl`` stops now, before
        the entry's folder is removed, rather than at the end of the shard."""
        with self._curl_lock:
            self._curl_stopped = True
            if self._curl is not None and self._curl.poll() is None:
                self._curl.kill()
                self._curl.wait()

    def _restore(
        self,
        key: str,
        identity: dict[str, Any],
        progress: Progress,
        production: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], tuple[dict[str, Any], dict[str, Any], dict[str, Any], float] | None]:
        """The entry ``key`` recovered into the run's collection and verified: (production's
        checksum, the fork's result), the result None where the entry does not serve.

        Without ``production``, production's points are read for it while the shards
        load (the two take about as long), and the entry serves only if it was taken of
        that checksum. An entry the server will not load, or that does not restore to its
        own checksum, is removed."""
        from omnilab.services.fork_cache import cache_key

        assert self.cache is not None
        item = self.item
        with self.cache.reading(key) as entry:
            if entry is None:
                return production or self._production(progress), None
            self._create()
            files = sorted(entry.path.glob(SHARD_FILE.format("*")))
            loading = in_background(lambda: self._load(files), "omnilab-fork-load")
            if production is None:
                production = self._production(progress)
            else:
                progress.restart()
            progress.wait(loading)
            loaded = loading.result()
            done = time.monotonic()
            if cache_key({**identity, "checksum": production}) != key:
                # Production changed since this entry was taken: it stays, unused.
                self.run.delete_collection(item.name)
                return production, None
            theirs: dict[str, Any] | None = None
            if loaded:
                with contextlib.suppress(RuntimeError, httpx.HTTPError):
                    theirs = self.run_server.digest(item.name, progress.check)
        if theirs == production:
            if progress.done == 0:
                progress.advance(int(production["points"]))
            record = {"served": True, "stored": False, "key": key[:16], "method": "fork-cache"}
            return production, (production, theirs, record, done)
        # Damaged on disk, or not what it says: gone, and the points copied after all.
        self.cache.remove(key)
        self.run.delete_collection(item.name)
        return production, None

    def _load(self, files: list[Path]) -> bool:
        """Each shard's snapshot into the run's collection; False where the server would
        not load one (a damaged entry), or there is none."""
        try:
            for path in files:
                shard = int(path.name.split("-", 1)[1].split(".", 1)[0])
                self.run_server.recover_shard(self.item.name, shard, _chunks(path))
        except (RuntimeError, OSError, httpx.HTTPError):
            return False
        return bool(files)
