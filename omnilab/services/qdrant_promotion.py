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

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omnilab.errors import UsageError
from omnilab.services import qdrant_points as points
from omnilab.services.promotion import (
    ItemPlan,
    ItemRecord,
    OnConflict,
    Progress,
    Promotable,
    Promoter,
    PromotionFailed,
    Sum64,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from omnilab.config import Settings
    from omnilab.progress import Reporter
    from omnilab.services.base import Endpoint

MARK = "__omnilab_"
BATCH = 256


def production_client(settings: Settings) -> QdrantClient:
    """The client for ``QDRANT_URL``: a server URL, or ``file:///path`` for local mode."""
    import warnings

    from qdrant_client import QdrantClient

    url = settings.qdrant_url
    if url.startswith("file://"):
        return QdrantClient(path=url[len("file://") :])
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"QDRANT_URL={url!r}: use http(s)://host:port or file:///path")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Api key is used with an insecure")
        return QdrantClient(url=url, api_key=settings.qdrant_api_key, timeout=120)


def _is_local(client: QdrantClient) -> bool:
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


class QdrantCollection(Promotable):
    """A collection's points (ids, vectors, payloads), configuration and payload indexes.

    ``target=`` gives it another name in production.
    """

    service: ClassVar[str] = "qdrant"
    kind: ClassVar[str] = "qdrant_collection"
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
        return settings.qdrant_url

    def promoter(
        self,
        settings: Settings,
        promotion_id: str,
        source: Endpoint | None,
        reporter: Reporter,
    ) -> QdrantPromoter:
        return QdrantPromoter(self, settings, promotion_id, source, reporter)


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
            from omnilab.services.qdrant import Qdrant

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
        plan = ItemPlan(
            kind=item.kind,
            service=item.service,
            label=item.label,
            source=item.name,
            target=item.target,
            action="create",
            unit=item.unit,
            source_count=count,
            size_bytes=count * 4 * sum(dims.values()),
            target_url=item.production_url(self.settings),
            details={"vectors": dims},
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
                name, limit=BATCH, offset=offset, with_vectors=True, with_payload=True
            )
            if points:
                yield points
            if offset is None:
                return

    def _compare(
        self, src: QdrantClient, src_name: str, dst: QdrantClient, dst_name: str
    ) -> dict[str, Any]:
        """Every point of ``dst_name`` against the point of the same id in ``src_name``.

        Raises PromotionFailed at the first difference; returns both sides' checksums.
        """
        sums = {side: (Sum64(), Sum64()) for side in ("source", "target")}
        cosine = _cosine_names(src.get_collection(src_name).config.params)
        worst = 0.0
        for batch in self._scroll(dst, dst_name):
            theirs = {p.id: p for p in src.retrieve(
                src_name, [p.id for p in batch], with_vectors=True, with_payload=True)}  # fmt: skip
            missing = [p.id for p in batch if p.id not in theirs]
            if missing:
                raise PromotionFailed(f"point {missing[0]} is not in the run's collection")
            originals = [theirs[p.id] for p in batch]
            try:
                worst = max(worst, points.compare(originals, batch, cosine))
            except points.PointsDiffer as exc:
                raise PromotionFailed(str(exc)) from None
            for side, group in (("source", originals), ("target", batch)):
                for p in group:
                    sums[side][0].add(points.payload_bytes(p.id, p.payload))
                    sums[side][1].add(points.vector_bytes(p.id, p.vector))
        return {
            side: {"points": a.count, "payloads_sum": a.hex, "vectors_sum": b.hex}
            for side, (a, b) in sums.items()
        } | {"max_vector_difference": worst}

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

    def _fill(self, name: str, src: QdrantClient, src_name: str, progress: Progress) -> None:
        from qdrant_client import models

        def copies() -> Iterator[Any]:
            for batch in self._scroll(src, src_name):
                for p in batch:
                    yield models.PointStruct(id=p.id, vector=p.vector, payload=p.payload)
                progress.advance(len(batch))

        # The official batch uploader; against a server, four writer processes.
        self.prod.upload_points(
            name,
            copies(),
            batch_size=BATCH,
            parallel=1 if _is_local(self.prod) else 4,
            wait=True,
            max_retries=3,
        )

    def _copy_verified(
        self, from_run: bool, src_name: str, name: str, progress: Progress
    ) -> dict[str, Any]:
        """Copy ``src_name`` (of the run's Qdrant, or production's own) to ``name``."""
        self._create_like(name, self.src if from_run else self.prod, src_name)
        self._fill(name, self.src if from_run else self.prod, src_name, progress)
        if _is_local(self.prod):
            # Read back what was stored, as any later reader will: local mode returns
            # cosine vectors normalised until the store is reopened, then as given.
            self.prod.close()
            self.prod = production_client(self.settings)
        src = self.src if from_run else self.prod
        expected = src.count(src_name, exact=True).count
        got = self.prod.count(name, exact=True).count
        if got != expected:
            raise PromotionFailed(f"{name}: {got:,} points staged of {expected:,}")
        try:
            return self._compare(src, src_name, self.prod, name)
        except PromotionFailed as exc:
            raise PromotionFailed(f"{self.item.label}: the staged copy differs: {exc}") from None

    # -- stage ----------------------------------------------------------------------------

    def stage(self, record: ItemRecord, progress: Progress) -> None:
        target = record.plan.target
        physical = self.physical(target)
        record.staging = {"collection": physical}
        existing = record.plan.details.get("existing") or {}
        if record.plan.action == "replace" and existing.get("kind") == "collection":
            # The collection must go for its name to become an alias: a verified copy first.
            backup = self.backup(target)
            record.staging["backup"] = backup
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
            for p in batch:
                payloads.add(points.payload_bytes(p.id, p.payload))
                vectors.add(points.vector_bytes(p.id, p.vector))
        return {"points": payloads.count, "payloads_sum": payloads.hex, "vectors_sum": vectors.hex}

    def discard_staging(self, record: ItemRecord) -> None:
        for name in (record.staging.get("collection"), record.staging.get("backup")):
            if name and self._lookup(name) == ("collection", name) and not self._aliased(name):
                self.prod.delete_collection(name)

    def _aliased(self, name: str) -> bool:
        return any(a.collection_name == name for a in self.prod.get_aliases().aliases)

    def drop_replaced(self, record: ItemRecord) -> None:
        previous = record.switch.get("replaced")
        if previous and not self._aliased(previous):
            self.prod.delete_collection(previous)


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
