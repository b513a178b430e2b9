"""Promoting Qdrant collections: ``QdrantCollection("docs")`` copies vectors and payloads.

Production readers use the collection's name; omnilab makes that name an **alias** of a
collection of its own, ``<name>__omnilab_<promotion>``:

- Stage: that collection is created in production with the source's configuration
  (vectors, sparse vectors, shards, HNSW, optimizers, WAL, quantization) and payload
  indexes; production readers do not use it, nothing points at it yet. Between two
  servers of the same version, each shard's snapshot is streamed from the run's Qdrant
  into the staged collection's shard (segments, payload indexes and HNSW graph arrive as
  files: nothing to index again), fetched by production itself where both are on this
  host, through omnilab otherwise; else the points are copied, four writers at a time.
- Verify: checksums of every point (id, payload, vectors), each computed from what its
  own server returns when read in full (the run's collection while the copy runs, the
  staged collection once it is complete): no value goes from one side's checksum to the
  other's, and a point changed in the staged copy by anyone fails the promotion.
  Between servers the points are read over gRPC and hashed as serialized
  (:mod:`.servers`); otherwise through qdrant-client, payloads as JSON and vectors as
  float32 (:mod:`.points`).
- Switch: one ``update_collection_aliases`` call moves the alias: readers see the old
  points or the new ones. The collection the alias pointed at stays, for rollback.

A production collection that is not yet an alias (created by hand) cannot be swapped
atomically: Qdrant refuses an alias with a collection's name. ``--on-conflict replace``
then copies it aside (verified), deletes it and creates the alias in the next call; the
plan says so, and every later promotion of it is an atomic alias switch. Rolling such a
promotion back makes the name a collection again, restored from that copy (a collection
snapshot between servers) with its configuration and points, and removes the copy.

The same calls serve a server (``QDRANT_URL=http://...``, gRPC on ``QDRANT_GRPC_PORT``)
and qdrant-client's local mode (``QDRANT_URL=file:///path``). Local mode normalises
cosine vectors in memory but stores them as given, and returns them as given once
reopened; a local-mode production is therefore reopened before its staged copy is read.
A run in local mode promoted into a server is the one case where the vectors differ on
purpose (the server normalises cosine vectors): they are then compared point by point
within float32 rounding, and the payloads and counts by checksum.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.errors import UsageError
from omnilab.redact import redact_url
from omnilab.services.promotable import (
    DIFF_EXAMPLES,
    ItemDiff,
    ItemPlan,
    ItemRecord,
    OnConflict,
    Progress,
    Promotable,
    Promoter,
    PromotionFailed,
    PromotionRefused,
    SinceFork,
    Sum64,
    in_background,
    pause_point,
)
from omnilab.services.qdrant import points, servers, transfer
from omnilab.services.qdrant.fork import QdrantForker

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from omnilab.config import Settings
    from omnilab.services.forking import Forker

MARK = "__omnilab_"


class QdrantPromoter(Promoter):
    item: QdrantCollection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prod: QdrantClient | None = None
        self._src: QdrantClient | None = None
        self._existing: tuple[str, str] | None = None  # (kind, physical name)
        self._servers: dict[str, servers.QdrantServer | None] = {}
        #: The run's collection's checksum, once computed (the run's data does not change).
        self._source_sum: dict[str, Any] | None = None
        #: How the last copy went ("shard-snapshot", "points"...), once known.
        self._copy_method: str | None = None

    @property
    def prod(self) -> QdrantClient:
        if self._prod is None:
            self._prod = transfer.production_client(self.settings)
        return self._prod

    @prod.setter
    def prod(self, client: QdrantClient) -> None:
        self._prod = client

    def _reopen_prod(self) -> QdrantClient:
        """A local-mode production opened again: it then returns what its storage holds."""
        if self._prod is not None:
            self._prod.close()
            self._prod = None
        return self.prod

    def _production_is_empty(self) -> bool:
        """A local-mode production folder that does not exist yet holds nothing (and a
        dry run must not create it by opening it)."""
        url = self.settings.qdrant_url
        return url.startswith("file://") and not Path(url[len("file://") :]).exists()

    @property
    def src(self) -> QdrantClient:
        if self._src is None:
            from omnilab.services.qdrant.service import Qdrant

            self._src = Qdrant().client(self.need_source())
        return self._src

    def _server(self, side: str) -> servers.QdrantServer | None:
        """The run's Qdrant (``"src"``) or production (``"prod"``) as a server reached
        over gRPC; None for local mode, or where its gRPC port does not answer."""
        if side in self._servers:
            return self._servers[side]
        if side == "prod":
            address = transfer.production_address(self.settings)
        else:
            address = transfer.source_address(self.need_source())
        server = None
        if address is not None:
            server = servers.QdrantServer(address)
            if server.grpc_version() is None:
                server.close()
                server = None
                if side == "prod":
                    self.reporter.note(
                        f"    {self.item.label}: production Qdrant's gRPC port "
                        f"{address.grpc_port} does not answer (QDRANT_GRPC_PORT): points go "
                        "through the HTTP API, several times slower"
                    )
        self._servers[side] = server
        return server

    def close(self) -> None:
        if self._prod is not None:
            self._prod.close()
        if self._src is not None:
            self._src.close()
        for server in self._servers.values():
            if server is not None:
                server.close()

    def physical(self, target: str) -> str:
        return f"{target}{MARK}{self.tag}"

    def backup(self, target: str) -> str:
        return f"{target}{MARK}replaced_{self.tag}"

    # -- production's names -------------------------------------------------------------

    def _lookup(self, name: str) -> tuple[str, str] | None:
        """("alias", collection) or ("collection", name) for ``name`` in production."""
        if self._production_is_empty():
            return None
        for alias in self.prod.get_aliases().aliases:
            if alias.alias_name == name:
                return "alias", alias.collection_name
        if any(c.name == name for c in self.prod.get_collections().collections):
            return "collection", name
        return None

    # -- plan -----------------------------------------------------------------------------

    def plan(self, on_conflict: OnConflict) -> ItemPlan:
        plan = self._plan_action(on_conflict)
        if plan.action in ("create", "replace", "version"):
            self._plan_route(plan)
        return plan

    def _plan_route(self, plan: ItemPlan) -> None:
        """Which copy the stage will use, said in the plan: shard snapshots need two
        servers of the same version; otherwise the points are copied (as the stage
        decides, :meth:`_copy_between_servers`)."""
        src, prod = self._server("src"), self._server("prod")
        if src is None or prod is None:
            plan.details["copy_method"] = "points"
            return
        ours, theirs = src.version(), prod.version()
        plan.details["servers"] = {"run": f"Qdrant {ours}", "production": f"Qdrant {theirs}"}
        if ours == theirs:
            params = self.src.get_collection(self.item.name).config.params
            whole = src.shards(self.item.name) == list(range(params.shard_number or 1))
            auto = getattr(params, "sharding_method", None) in (None, "auto")
            plan.details["copy_method"] = "shard-snapshot" if whole and auto else "points"
            return
        plan.details["copy_method"] = "points"
        plan.notes.append(
            f"the run's Qdrant {ours} and production's {theirs} differ: shard snapshots "
            "need equal versions, so the points are copied (slower; production indexes "
            "them again)"
        )

    def _plan_action(self, on_conflict: OnConflict) -> ItemPlan:
        item = self.item
        try:
            info = self.src.get_collection(item.name)
        except Exception:
            raise PromotionFailed(
                f"{item.label}: the run's Qdrant has no collection {item.name}"
            ) from None
        count = self.src.count(item.name, exact=True).count
        dims = transfer.dimensions(info.config.params)
        plan = self.new_plan(
            count, size_bytes=count * 4 * sum(dims.values()), details={"vectors": dims}
        )
        existing = self._lookup(item.target)
        self._existing = existing
        if existing is None:
            plan.reason = f"production has no collection or alias {item.target}"
            return plan
        kind, physical = existing
        plan.target_count = self.prod.count(physical, exact=True).count
        plan.details["existing"] = {"kind": kind, "collection": physical}
        if self._same(physical, count):
            plan.action, plan.reason = "nothing", "production already holds these points"
            return plan
        if on_conflict == "fail":
            plan.action = "conflict"
            plan.reason = (
                f"production already has a different {kind} {item.target} "
                f"({plan.target_count:,} points); use --on-conflict replace or version"
            )
            return plan
        if on_conflict == "replace":
            plan.action = "replace"
            if kind == "alias":
                plan.reason = (
                    f"moves alias {item.target} from {physical} (kept for rollback) to the "
                    "run's points"
                )
            else:
                plan.reason = (
                    f"copies production's collection {item.target} aside as "
                    f"{self.backup(item.target)} (for rollback) and makes the name an alias"
                )
                plan.notes.append(
                    f"not atomic this once: {item.target} is a collection, not an alias; "
                    "between its deletion and the alias's creation (milliseconds) readers "
                    "find no collection of that name. Later promotions switch atomically; "
                    f"a rollback of this one makes {item.target} a collection again, with "
                    "the same gap while it is restored."
                )
            return plan
        for n in range(2, 10_000):
            candidate = f"{item.target}_v{n}"
            found = self._lookup(candidate)
            plan.target = candidate
            if found is None:
                plan.action = "version"
                plan.reason = f"production's {item.target} is left as it is"
                self._existing = None
                return plan
            if self._same(found[1], count):
                plan.action = "nothing"
                plan.reason = f"production already holds these points as {candidate}"
                return plan
        raise PromotionFailed(f"{item.label}: no free version name")

    # -- diff -------------------------------------------------------------------------------

    def diff(self, examples: int = DIFF_EXAMPLES, since: SinceFork | None = None) -> ItemDiff:
        """Points added, changed and removed against production's collection (or the one
        its alias names), by id: each point's digest (payload and vectors), computed by
        omnilab from the pages each server returns (over gRPC when both answer there,
        else through qdrant-client on both sides); production gets scroll calls only."""
        began = time.monotonic()
        item = self.item
        existing = self._lookup(item.target)
        src, prod = self._server("src"), self._server("prod")
        by_grpc = src is not None and prod is not None

        def digests(side: str, name: str) -> dict[str, int]:
            out: dict[str, int] = {}
            server = src if side == "src" else prod
            if by_grpc and server is not None:
                for page in server.scan(name):
                    out.update(servers.point_digests(page))
                return out
            client = self.src if side == "src" else self.prod
            for batch in transfer.scroll(client, name):
                out.update(points.point_digests(batch))
            return out

        ours = digests("src", item.name)
        theirs = digests("prod", existing[1]) if existing is not None else {}
        found = {
            "added": [k for k in ours if k not in theirs],
            "changed": [k for k, v in ours.items() if k in theirs and theirs[k] != v],
            "removed": [k for k in theirs if k not in ours],
        }
        return ItemDiff(
            by="point id",
            unit=item.unit,
            added=len(found["added"]),
            changed=len(found["changed"]),
            removed=len(found["removed"]),
            examples={kind: sorted(ids, key=_id_order)[:examples] for kind, ids in found.items()},
            production_has_it=existing is not None,
            seconds=round(time.monotonic() - began, 4),
        )

    def _same(self, physical: str, count: int) -> bool:
        """Does production's ``physical`` hold exactly the run's points?"""
        if self.prod.count(physical, exact=True).count != count:
            return False
        src, prod = self._server("src"), self._server("prod")
        if src is not None and prod is not None:
            with ThreadPoolExecutor(max_workers=1) as pool:
                theirs = pool.submit(self._source_digest, src)
                ours = prod.digest(physical)
                return ours == theirs.result()
        try:
            self._compare(self.src, self.item.name, self.prod, physical)
        except PromotionFailed:
            return False
        return True

    def _source_digest(self, src: servers.QdrantServer) -> dict[str, Any]:
        if self._source_sum is None:
            self._source_sum = src.digest(self.item.name)
        return self._source_sum

    # -- reading and comparing through qdrant-client ------------------------------------

    def _client_digest(self, client: QdrantClient, name: str) -> dict[str, Any]:
        return transfer.client_digest(client, name)

    def _compare(self, src: QdrantClient, src_name: str, dst: QdrantClient, dst_name: str) -> float:
        """Every point of ``dst_name`` against the point of the same id in ``src_name``
        (vectors within float32 rounding); returns the largest vector difference, or
        raises PromotionFailed at the first difference."""
        cosine = transfer.cosine_names(src.get_collection(src_name).config.params)
        worst = 0.0
        seen = 0
        for batch in transfer.scroll(dst, dst_name):
            theirs = {p.id: p for p in src.retrieve(
                src_name, [p.id for p in batch], with_vectors=True, with_payload=True)}  # fmt: skip
            missing = [p.id for p in batch if p.id not in theirs]
            if missing:
                raise PromotionFailed(f"point {missing[0]} is not in the run's collection")
            try:
                worst = max(worst, points.compare([theirs[p.id] for p in batch], batch, cosine))
            except points.PointsDiffer as exc:
                raise PromotionFailed(str(exc)) from None
            seen += len(batch)
        expected = src.count(src_name, exact=True).count
        if seen != expected:
            raise PromotionFailed(f"{seen:,} points where the run's collection has {expected:,}")
        return worst

    def _create_like(self, name: str, src: QdrantClient, src_name: str) -> None:
        transfer.create_like(self.prod, name, src, src_name)

    # -- copy and verify ----------------------------------------------------------------

    def _copy_verified(
        self, from_run: bool, src_name: str, name: str, progress: Progress
    ) -> dict[str, Any]:
        """Copy ``src_name`` (of the run's Qdrant, or production's own) to production's new
        collection ``name`` and verify the copy; returns both sides' checksums, the copy
        method and the seconds of copy and verification.

        Raises PromotionFailed, naming a point where it can, when the copy differs.
        """
        self._copy_method = None
        src = self._server("src" if from_run else "prod")
        prod = self._server("prod")
        if src is not None and prod is not None:
            return self._copy_between_servers(from_run, src, prod, src_name, name, progress)
        return self._copy_through_client(from_run, src_name, name, progress)

    def _copy_between_servers(
        self,
        from_run: bool,
        src: servers.QdrantServer,
        prod: servers.QdrantServer,
        src_name: str,
        name: str,
        progress: Progress,
    ) -> dict[str, Any]:
        client = self.src if from_run else self.prod
        self._create_like(name, client, src_name)
        params = client.get_collection(src_name).config.params
        shards = transfer.whole_shards(src, prod, params, src_name)
        snapshot = shards is not None
        began = time.monotonic()
        if snapshot:
            method = self._copy_method = "shard-snapshot"

            def read_source() -> dict[str, Any]:
                pause_point("reading:qdrant")  # tests: Ctrl-C while the source is read
                return self._source_digest(src) if from_run else src.digest(src_name)

            # The source is read in full (its checksum) while its shards stream over. A
            # daemon thread: a promotion interrupted here is undone at once, not after
            # the whole read (minutes for a large collection), which ends with the stack.
            source_future = in_background(read_source, "omnilab-promote-read")
            pull = True
            for shard in shards or []:
                method = self._copy_method = transfer.move_shard(
                    src, prod, (src_name, name), shard, self._note, pull=pull
                )
                pull = method == "shard-snapshot"  # else the next ones are streamed
                progress.advance(0)  # a step of the copy done (a shard, complete)
            progress.wait(source_future)
            source = source_future.result()
            progress.advance(source["points"])
        else:
            method = self._copy_method = "points"
            source = self._copy_points(src, prod, src_name, name, progress)
            if from_run:
                self._source_sum = source
        copied = time.monotonic()
        target = prod.digest(name)
        verified = time.monotonic()
        if target != source:
            self._refuse(from_run, src_name, name, source, target)
        return {
            "source": source,
            "target": target,
            "method": method,
            "seconds": {"copy": round(copied - began, 4), "verify": round(verified - copied, 4)},
        }

    def _note(self, text: str) -> None:
        self.reporter.note(f"    {self.item.label}: {text}")

    @staticmethod
    def _copy_points(
        src: servers.QdrantServer,
        prod: servers.QdrantServer,
        src_name: str,
        name: str,
        progress: Progress,
    ) -> dict[str, Any]:
        """Points from one server to the other (:func:`.transfer.copy_pages`); returns
        the source's checksum, computed from the pages read."""
        return transfer.copy_pages(src.scan(src_name), prod, name, progress)

    def _copy_through_client(
        self, from_run: bool, src_name: str, name: str, progress: Progress
    ) -> dict[str, Any]:
        """Copy and verify with qdrant-client calls (local mode on either side, or no gRPC):
        the source's checksum from the pages copied, the copy's from reading it in full
        once written (a local-mode production reopened first: it then reads its storage)."""
        from qdrant_client import models

        src = self.src if from_run else self.prod
        self._create_like(name, src, src_name)
        cosine = transfer.cosine_names(src.get_collection(src_name).config.params)
        payloads, vectors = Sum64(), Sum64()
        lock = threading.Lock()

        def copy(batch: list[Any]) -> None:
            self.prod.upsert(
                name,
                [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in batch],
                wait=True,
            )
            with lock:
                points.add_digests(batch, payloads, vectors)
            progress.advance(len(batch))

        self._copy_method = "points"
        began = time.monotonic()
        local_prod = transfer.is_local(self.prod)
        local_src = transfer.is_local(src)
        workers = 1 if local_prod else transfer.WRITERS
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque[Future[None]] = deque()
            for page in transfer.scroll(src, src_name):
                for start in range(0, len(page), transfer.BATCH):
                    pending.append(pool.submit(copy, page[start : start + transfer.BATCH]))
                while len(pending) > 2 * workers:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        copied = time.monotonic()
        source = transfer.checksum(payloads, vectors)
        if local_prod:
            self._reopen_prod()
            if not from_run:
                src = self.prod
        target = self._client_digest(self.prod, name)
        result: dict[str, Any] = {"source": source, "target": target, "method": "points"}
        if target != source:
            renormalised = cosine and local_src and not local_prod and from_run
            same_points = all(target[k] == source[k] for k in ("points", "payloads_sum", "method"))
            if not (renormalised and same_points):
                self._refuse(from_run, src_name, name, source, target)
            # The server normalised the run's cosine vectors: each one compared instead.
            result["max_vector_difference"] = self._compare(src, src_name, self.prod, name)
            result["vectors"] = "compared point by point (cosine, normalised by the server)"
        result["seconds"] = {
            "copy": round(copied - began, 4),
            "verify": round(time.monotonic() - copied, 4),
        }
        return result

    def _refuse(
        self,
        from_run: bool,
        src_name: str,
        name: str,
        source: dict[str, Any],
        target: dict[str, Any],
    ) -> None:
        """The copy's checksums are not the source's: name the first point that differs
        (point by point, only now), and fail."""
        what = [k for k in source if k != "points" and source[k] != target.get(k)]
        detail = f"{', '.join(what)} differ ({target['points']:,} points of {source['points']:,})"
        try:
            self._compare(self.src if from_run else self.prod, src_name, self.prod, name)
        except PromotionFailed as exc:
            detail = f"{exc}; {detail}"
        raise PromotionRefused(
            f"{self.item.label}: the copy in {name} is not the run's collection: {detail}"
            if from_run
            else f"{self.item.label}: the copy of production's {src_name} in {name} differs "
            f"from it: {detail}"
        )

    # -- stage ----------------------------------------------------------------------------

    def _staging_names(self, record: ItemRecord) -> dict[str, str]:
        """The collections :meth:`stage` creates: the copy, and the copy of production's
        collection when it must become an alias."""
        target = record.plan.target
        names = {"collection": self.physical(target)}
        existing = record.plan.details.get("existing") or {}
        if record.plan.action == "replace" and existing.get("kind") == "collection":
            names["backup"] = self.backup(target)
        return names

    def reserve(self, record: ItemRecord) -> None:
        record.staging = self._staging_names(record)

    def stage(self, record: ItemRecord, progress: Progress) -> None:
        target = record.plan.target
        record.staging = self._staging_names(record)
        physical = record.staging["collection"]
        backup = record.staging.get("backup")
        replaced = None
        if backup:
            # The collection must go for its name to become an alias: a verified copy first.
            self.reporter.note(f"    {self.item.label}: copying production's {target} aside")
            with Progress(
                self.reporter, f"{target} aside", record.plan.target_count or 0, "points"
            ) as aside:
                replaced = self._copy_verified(False, target, backup, aside)["target"]
        try:
            result = self._copy_verified(True, self.item.name, physical, progress)
        finally:  # recorded even when the copy is refused
            if self._copy_method:
                record.staging["copy_method"] = self._copy_method
        del result["method"]
        record.seconds.update(result.pop("seconds"))
        record.counts = {"source": result["source"]["points"], "target": result["target"]["points"]}
        record.checksums = result if replaced is None else {**result, "replaced": replaced}

    # -- switch ---------------------------------------------------------------------------

    def switch(self, record: ItemRecord) -> None:
        from qdrant_client import models

        target = record.plan.target
        physical = record.staging["collection"]
        existing = record.plan.details.get("existing") or {}
        ops: list[Any] = []
        previous: str | None = None
        kind: str | None = None
        if record.plan.action == "replace" and existing.get("kind") == "alias":
            previous, kind = existing["collection"], "alias"
            ops.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=target))
            )
        elif record.plan.action == "replace":
            previous, kind = record.staging["backup"], "collection"
            self.prod.delete_collection(target)
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=physical, alias_name=target)
            )
        )
        try:
            self.prod.update_collection_aliases(change_aliases_operations=ops)
        except Exception:
            if kind == "collection" and self._lookup(target) is None:
                # Deleted but not yet an alias: production's collection comes back first.
                self._restore_collection(target, record.staging["backup"])
            raise
        record.switch.update(alias=target, collection=physical, replaced=previous)
        if kind is not None:
            record.switch["replaced_kind"] = kind

    def intended_switch(self, record: ItemRecord) -> dict[str, Any]:
        existing = record.plan.details.get("existing") or {}
        previous = None
        if record.plan.action == "replace":
            alias = existing.get("kind") == "alias"
            previous = existing["collection"] if alias else record.staging["backup"]
        return {
            "alias": record.plan.target,
            "collection": record.staging["collection"],
            "replaced": previous,
        }

    def unswitch(self, record: ItemRecord) -> None:
        from qdrant_client import models

        target = record.switch.get("alias") or record.plan.target
        physical = record.staging["collection"]
        current = self._lookup(target)
        previous = record.switch.get("replaced")
        if previous and _replaced_kind(record) == "collection":
            # Production's name was a collection: it becomes one again, as it was.
            if current not in (None, ("alias", physical), ("collection", target)):
                raise PromotionFailed(f"{target} no longer points at {physical}")
            self._restore_collection(target, previous, current)
            self.prod.delete_collection(physical)
            self.prod.delete_collection(previous)
            return
        if current is not None and current != ("alias", physical):
            raise PromotionFailed(f"{target} no longer points at {physical}")
        ops: list[Any] = []
        if current is not None:
            ops.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=target))
            )
        if previous:
            ops.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=previous, alias_name=target)
                )
            )
        if ops:
            self.prod.update_collection_aliases(change_aliases_operations=ops)
        self.prod.delete_collection(physical)

    def _restore_collection(
        self, target: str, backup: str, current: tuple[str, str] | None = None
    ) -> None:
        """Make ``target`` a collection again with ``backup``'s configuration and points
        (verified), replacing the alias or the partial restoration ``current``.

        Between servers the backup's collection snapshot is fetched first and uploaded
        once the name is free, so readers miss the name only while the server loads it.
        """
        from qdrant_client import models

        if self._lookup(backup) != ("collection", backup):
            raise PromotionFailed(
                f"{backup} (production's {target} as it was) is gone: cannot restore {target}"
            )

        def free_the_name() -> None:
            if current is not None and current[0] == "alias":
                delete = models.DeleteAlias(alias_name=target)
                self.prod.update_collection_aliases(
                    change_aliases_operations=[models.DeleteAliasOperation(delete_alias=delete)]
                )
            elif current is not None:
                self.prod.delete_collection(target)

        prod = self._server("prod")
        if prod is None:
            free_the_name()
            with Progress(self.reporter, f"{target} restored", 0, "points") as done:
                self._copy_verified(False, backup, target, done)
            return
        with tempfile.TemporaryDirectory(prefix="omnilab-qdrant-") as tmp:
            path = Path(tmp) / "collection.snapshot"
            with ThreadPoolExecutor(max_workers=1) as pool:
                expected = pool.submit(prod.digest, backup)
                with prod.collection_snapshot(backup) as chunks, path.open("wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                free_the_name()
                with path.open("rb") as data:
                    prod.recover_collection(target, iter(lambda: data.read(1 << 20), b""))
                os.unlink(path)
                got = prod.digest(target)
                if got != expected.result():
                    raise PromotionFailed(
                        f"{target} restored from {backup} differs from it; {backup} is kept"
                    )

    def is_switched(self, record: ItemRecord) -> bool:
        physical = record.staging.get("collection")
        return self._lookup(record.plan.target) == ("alias", physical)

    def target_checksum(self, record: ItemRecord) -> dict[str, Any] | None:
        found = self._lookup(record.plan.target)
        if found is None:
            return None
        recorded = record.checksums.get("target") or {}
        method = recorded.get("method")
        if method in servers.HASHES:
            prod = self._server("prod")
            if prod is None:
                raise PromotionFailed(
                    f"{self.item.label}: production Qdrant's gRPC port does not answer "
                    "(QDRANT_GRPC_PORT); its checksum was recorded over gRPC"
                )
            return prod.digest(found[1], method=method)
        current = self._client_digest(self.prod, found[1])
        if "method" not in recorded:
            del current["method"]  # recorded before checksums named their method
        return current

    def discard_staging(self, record: ItemRecord) -> list[str]:
        # The names recorded before the copy began; for a record made before they were
        # recorded, the same names again, from the promotion id and the plan.
        names = {**self._staging_names(record), **record.staging}
        target = record.plan.target
        removed = []
        backup = names.get("backup")
        if backup and self._lookup(target) is None and self._lookup(backup) is not None:
            # Production's collection was deleted for the switch, which did not happen:
            # it comes back, the same points under the same name, before anything goes.
            self._restore_collection(target, backup)
            removed.append(f"(restored production's qdrant collection {target} from {backup})")
        for key in ("collection", "backup"):
            name = names.get(key)
            if not name or self._lookup(name) != ("collection", name) or self._aliased(name):
                continue
            if key == "backup" and self._lookup(target) is None:
                # A switch died between deleting production's collection and creating
                # the alias: this copy is all that is left of it.
                left = f"the only copy left of production's {target}"
                self.reporter.note(f"  {self.item.label}: kept {name}, {left}")
                continue
            try:
                count: int | None = self.prod.count(name, exact=True).count
            except Exception:  # a shard still loading from a snapshot cannot be counted
                count = None
            self.prod.delete_collection(name)
            points = "?" if count is None else f"{count:,} point{'s' * (count != 1)}"
            removed.append(f"qdrant collection {name} ({points})")
        return removed

    def _aliased(self, name: str) -> bool:
        return any(a.collection_name == name for a in self.prod.get_aliases().aliases)

    def drop_replaced(self, record: ItemRecord) -> None:
        previous = record.switch.get("replaced")
        if previous and not self._aliased(previous):
            self.prod.delete_collection(previous)


def _id_order(ident: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then UUIDs: examples in a stable order."""
    return (0, int(ident), "") if ident.isdigit() else (1, 0, ident)


def _replaced_kind(record: ItemRecord) -> str | None:
    """What the switch replaced: an alias or a collection (older records: from the plan)."""
    kind = record.switch.get("replaced_kind")
    if kind is None:
        kind = (record.plan.details.get("existing") or {}).get("kind")
    return str(kind) if kind else None


class QdrantCollection(Promotable):
    """A collection's points (ids, vectors, payloads), configuration and payload indexes.

    ``target=`` gives it another name in production.
    """

    service: ClassVar[str] = "qdrant"
    kind: ClassVar[str] = "qdrant_collection"
    promoter_class: ClassVar[type[Promoter]] = QdrantPromoter
    forker_class: ClassVar[type[Forker] | None] = QdrantForker
    unit: ClassVar[str] = "points"
    noun: ClassVar[str] = "qdrant collection"

    def __init__(
        self,
        name: str,
        *,
        target: str | None = None,
        limit: int | None = None,
        sample: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(name, target=target, limit=limit, sample=sample, seed=seed)
        if MARK in self.name or MARK in self.target:
            raise UsageError(f"QdrantCollection: names containing {MARK!r} are omnilab's own")

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"name": self.name}
        if self.target != self.name:
            options["target"] = self.target
        return options

    def production_url(self, settings: Settings) -> str:
        return redact_url(settings.qdrant_url)
