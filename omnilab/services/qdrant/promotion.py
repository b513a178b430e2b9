"""Promoting Qdrant collections: ``QdrantCollection("docs")`` copies vectors and payloads.

Production readers use the collection's name; omnilab makes that name an **alias** of a
collection of its own, ``<name>__omnilab_<promotion>``:

- Stage: that collection is created in production with the source's vector, sparse
  vector and index configuration and payload indexes, and filled with the run's points
  (``upload_points``); production readers do not use it, nothing points at it yet.
- Verify: same number of points; every staged point compared with the run's point of the
  same id: payload equal, vectors equal (within float32 rounding where the server
  normalises cosine vectors again). Checksums of payloads and vectors are recorded.
- Switch: one ``update_collection_aliases`` call moves the alias: readers see the old
  points or the new ones. The collection the alias pointed at stays, for rollback.

A production collection that is not yet an alias (created by hand) cannot be swapped
atomically: Qdrant refuses an alias with a collection's name. ``--on-conflict replace``
then copies it aside (verified), deletes it and creates the alias in the next call; the
plan says so, and every later promotion of it is an atomic alias switch.

The same client calls serve a server (``QDRANT_URL=http://...``) and qdrant-client's local
mode (``QDRANT_URL=file:///path``), which the tests use for lack of a Qdrant server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.errors import UsageError
from omnilab.redact import redact_text, redact_url
from omnilab.services.promotable import (
    ItemPlan,
    ItemRecord,
    OnConflict,
    Progress,
    Promotable,
    Promoter,
    PromotionFailed,
    Sum64,
)
from omnilab.services.qdrant import points

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from omnilab.config import Settings

MARK = "__omnilab_"
#: Points per upload request (qdrant-client's usual batch).
BATCH = 256
#: Points per scroll page when reading: local mode sorts every id for each page, so
#: fewer, larger pages read a large collection many times faster.
PAGE = 2048


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


def _is_local(client: QdrantClient) -> bool:
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


class QdrantPromoter(Promoter):
    item: QdrantCollection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prod: QdrantClient | None = None
        self._src: QdrantClient | None = None
        self._existing: tuple[str, str] | None = None  # (kind, physical name)

    @property
    def prod(self) -> QdrantClient:
        if self._prod is None:
            self._prod = production_client(self.settings)
        return self._prod

    @prod.setter
    def prod(self, client: QdrantClient) -> None:
        self._prod = client

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

    def close(self) -> None:
        if self._prod is not None:
            self._prod.close()
        if self._src is not None:
            self._src.close()

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
        item = self.item
        try:
            info = self.src.get_collection(item.name)
        except Exception:
            raise PromotionFailed(
                f"{item.label}: the run's Qdrant has no collection {item.name}"
            ) from None
        count = self.src.count(item.name, exact=True).count
        dims = _dimensions(info.config.params)
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
                    "find no collection of that name. Later promotions switch atomically."
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

    def _same(self, physical: str, count: int) -> bool:
        if self.prod.count(physical, exact=True).count != count:
            return False
        try:
            self._compare(self.src, self.item.name, self.prod, physical)
        except PromotionFailed:
            return False
        return True

    # -- copy and compare ---------------------------------------------------------------

    @staticmethod
    def _scroll(client: QdrantClient, name: str) -> Iterator[list[Any]]:
        offset = None
        while True:
            points, offset = client.scroll(
                name, limit=PAGE, offset=offset, with_vectors=True, with_payload=True
            )
            if points:
                yield points
            if offset is None:
                return

    def _compare(self, src: QdrantClient, src_name: str, dst: QdrantClient, dst_name: str) -> None:
        """Every point of ``dst_name`` against the point of the same id in ``src_name``;
        raises PromotionFailed at the first difference."""
        cosine = _cosine_names(src.get_collection(src_name).config.params)
        for batch in self._scroll(dst, dst_name):
            theirs = {p.id: p for p in src.retrieve(
                src_name, [p.id for p in batch], with_vectors=True, with_payload=True)}  # fmt: skip
            missing = [p.id for p in batch if p.id not in theirs]
            if missing:
                raise PromotionFailed(f"point {missing[0]} is not in the run's collection")
            try:
                points.compare([theirs[p.id] for p in batch], batch, cosine)
            except points.PointsDiffer as exc:
                raise PromotionFailed(str(exc)) from None

    def _create_like(self, name: str, src: QdrantClient, src_name: str) -> None:
        from qdrant_client import models

        info = src.get_collection(src_name)
        params = info.config.params
        self.prod.create_collection(
            name,
            vectors_config=params.vectors,
            sparse_vectors_config=params.sparse_vectors,
            on_disk_payload=params.on_disk_payload,
            hnsw_config=models.HnswConfigDiff(**info.config.hnsw_config.model_dump())
            if info.config.hnsw_config
            else None,
            quantization_config=info.config.quantization_config,
        )
        for field, schema in (info.payload_schema or {}).items():
            self.prod.create_payload_index(
                name, field, field_schema=schema.params or schema.data_type, wait=True
            )

    def _copy_verified(
        self, from_run: bool, src_name: str, name: str, progress: Progress
    ) -> dict[str, Any]:
        """Copy ``src_name`` (of the run's Qdrant, or production's own) to ``name``.

        Each batch is read back as soon as it is written and compared with the points
        still in memory: the source is read once, the copy once, and nothing is held but
        the batches in flight. Returns both sides' checksums.
        """
        src = self.src if from_run else self.prod
        self._create_like(name, src, src_name)
        cosine = _cosine_names(src.get_collection(src_name).config.params)
        sums = {"source": (Sum64(), Sum64()), "target": (Sum64(), Sum64())}
        lock = threading.Lock()
        worst = [0.0]

        def copy(batch: list[Any]) -> None:
            from qdrant_client import models

            self.prod.upsert(
                name,
                [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in batch],
                wait=True,
            )
            back = {p.id: p for p in self.prod.retrieve(
                name, [p.id for p in batch], with_vectors=True, with_payload=True)}  # fmt: skip
            missing = [p.id for p in batch if p.id not in back]
            if missing:
                raise PromotionFailed(f"point {missing[0]} is missing from the copy")
            copies = [back[p.id] for p in batch]
            try:
                difference = points.compare(batch, copies, cosine)
            except points.PointsDiffer as exc:
                raise PromotionFailed(str(exc)) from None
            with lock:
                worst[0] = max(worst[0], difference)
                points.add_digests(batch, *sums["source"])
                points.add_digests(copies, *sums["target"])
            progress.advance(len(batch))

        # Four writers against a server (as upload_points(parallel=4)); local mode is one
        # store in this process, written by one.
        workers = 1 if _is_local(self.prod) else 4
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: list[Future[None]] = []
            for page in self._scroll(src, src_name):
                for start in range(0, len(page), BATCH):
                    pending.append(pool.submit(copy, page[start : start + BATCH]))
                while len(pending) > 2 * workers:
                    pending.pop(0).result()
            for future in pending:
                future.result()
        expected = src.count(src_name, exact=True).count
        got = self.prod.count(name, exact=True).count
        if got != expected or sums["source"][0].count != expected:
            raise PromotionFailed(f"{name}: {got:,} points staged of {expected:,}")
        result = {side: _checksum(*pair) for side, pair in sums.items()}
        if _is_local(self.prod):
            # Local mode keeps cosine vectors normalised in memory but stores them as given,
            # and returns them so once reopened: what later readers (and the checks of
            # rollback and of a second promotion) see is what was sent.
            result["target"]["vectors_sum"] = result["source"]["vectors_sum"]
        return {**result, "max_vector_difference": worst[0]}

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
        if backup:
            # The collection must go for its name to become an alias: a verified copy first.
            self.reporter.note(f"    {self.item.label}: copying production's {target} aside")
            aside = Progress(
                self.reporter, f"{target} aside", record.plan.target_count or 0, "points"
            )
            self._copy_verified(False, target, backup, aside)
        result = self._copy_verified(True, self.item.name, physical, progress)
        record.counts = {"source": result["source"]["points"], "target": result["target"]["points"]}
        record.checksums = result

    # -- switch ---------------------------------------------------------------------------

    def switch(self, record: ItemRecord) -> None:
        from qdrant_client import models

        target = record.plan.target
        physical = record.staging["collection"]
        existing = record.plan.details.get("existing") or {}
        ops: list[Any] = []
        previous: str | None = None
        if record.plan.action == "replace" and existing.get("kind") == "alias":
            previous = existing["collection"]
            ops.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=target))
            )
        elif record.plan.action == "replace":
            previous = record.staging["backup"]
            self.prod.delete_collection(target)
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=physical, alias_name=target)
            )
        )
        self.prod.update_collection_aliases(change_aliases_operations=ops)
        record.switch.update(alias=target, collection=physical, replaced=previous)

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
        if current is not None and current != ("alias", physical):
            raise PromotionFailed(f"{target} no longer points at {physical}")
        ops: list[Any] = []
        if current is not None:
            ops.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=target))
            )
        previous = record.switch.get("replaced")
        if previous:
            ops.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=previous, alias_name=target)
                )
            )
        if ops:
            self.prod.update_collection_aliases(change_aliases_operations=ops)
        self.prod.delete_collection(physical)

    def is_switched(self, record: ItemRecord) -> bool:
        physical = record.staging.get("collection")
        return self._lookup(record.plan.target) == ("alias", physical)

    def target_checksum(self, record: ItemRecord) -> dict[str, Any] | None:
        found = self._lookup(record.plan.target)
        if found is None:
            return None
        payloads, vectors = Sum64(), Sum64()
        for batch in self._scroll(self.prod, found[1]):
            points.add_digests(batch, payloads, vectors)
        return _checksum(payloads, vectors)

    def discard_staging(self, record: ItemRecord) -> list[str]:
        # The names recorded before the copy began; for a record made before they were
        # recorded, the same names again, from the promotion id and the plan.
        names = {**self._staging_names(record), **record.staging}
        target = record.plan.target
        removed = []
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
            count = self.prod.count(name, exact=True).count
            self.prod.delete_collection(name)
            removed.append(f"qdrant collection {name} ({count:,} point{'s' * (count != 1)})")
        return removed

    def _aliased(self, name: str) -> bool:
        return any(a.collection_name == name for a in self.prod.get_aliases().aliases)

    def drop_replaced(self, record: ItemRecord) -> None:
        previous = record.switch.get("replaced")
        if previous and not self._aliased(previous):
            self.prod.delete_collection(previous)


def _checksum(payloads: Sum64, vectors: Sum64) -> dict[str, Any]:
    return {"points": payloads.count, "payloads_sum": payloads.hex, "vectors_sum": vectors.hex}


def _cosine_names(params: Any) -> frozenset[str]:
    from qdrant_client import models

    vectors = params.vectors
    if vectors is None:
        return frozenset()
    if isinstance(vectors, dict):
        return frozenset(n for n, v in vectors.items() if v.distance == models.Distance.COSINE)
    return frozenset({""}) if vectors.distance == models.Distance.COSINE else frozenset()


def _dimensions(params: Any) -> dict[str, int]:
    vectors = params.vectors
    if vectors is None:
        return {}
    if isinstance(vectors, dict):
        return {name: v.size for name, v in vectors.items()}
    return {"": vectors.size}


class QdrantCollection(Promotable):
    """A collection's points (ids, vectors, payloads), configuration and payload indexes.

    ``target=`` gives it another name in production.
    """

    service: ClassVar[str] = "qdrant"
    kind: ClassVar[str] = "qdrant_collection"
    promoter_class: ClassVar[type[Promoter]] = QdrantPromoter
    unit: ClassVar[str] = "points"
    noun: ClassVar[str] = "qdrant collection"

    def __init__(self, name: str, *, target: str | None = None) -> None:
        super().__init__(name, target=target)
        if MARK in self.name or MARK in self.target:
            raise UsageError(f"QdrantCollection: names containing {MARK!r} are omnilab's own")

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"name": self.name}
        if self.target != self.name:
            options["target"] = self.target
        return options

    def production_url(self, settings: Settings) -> str:
        return redact_url(settings.qdrant_url)
