"""What every promotable item provides: its declaration, and how it is copied.

An experiment declares what it produces (``promotes = [QdrantCollection("docs"), ...]``);
``omnilab promote RUN`` copies each item from the run's kept stack into production. The
module beside each service's (``redis_promotion.py``...) holds how that service's data
is copied; the generic machinery (order, records, undoing earlier switches when a later
one fails, rollback) is in :mod:`omnilab.promote`.

Every item goes through the same steps, so that production readers see all or nothing:

1. **plan**: look at the source and at production; create, replace, version, or nothing
   to do (production already holds the same data), or a conflict;
2. **stage**: copy into a place production readers never look (a collection behind no
   alias, a ``omnilab:staging:`` key prefix, a schema of its own), then compare counts and
   checksums of the source with the staged copy;
3. **switch**: one atomic step makes the staged copy the production item (an alias
   change; RENAMEs inside MULTI/EXEC; ALTER TABLE ... SET SCHEMA in one transaction), and
   keeps what it replaced, for rollback;
4. **unswitch**: the inverse step, atomic too (a later item failed, or ``omnilab rollback``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field

from omnilab.errors import OmnilabError, UsageError

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.progress import Reporter
    from omnilab.services.base import Endpoint
    from omnilab.services.forking import Forker

OnConflict = Literal["fail", "replace", "version"]
ON_CONFLICT: tuple[str, ...] = ("fail", "replace", "version")
#: ``incompatible``: production cannot accept the item (its server is too old for the run's
#: data, and no other route works); the plan's reason says what to do.
Action = Literal["create", "replace", "version", "nothing", "conflict", "incompatible"]
ItemState = Literal[
    "planned", "staging", "staged", "switching", "switched", "reverted", "failed", "rolled_back"
]


class PromotionError(OmnilabError):
    """A promotion that could not be carried out; production is as it was before."""


class PromotionConflict(PromotionError, UsageError):
    """Production already holds a different item of that name (``--on-conflict fail``)."""


class PromotionFailed(PromotionError):
    """Copy, verification or switch failed; what was staged is removed, nothing switched."""


class PromotionRefused(PromotionFailed):
    """Refused on purpose, not broken: production cannot accept an item (the plan says
    why and what to do), or the staged copy does not match the run's data. Production is
    as it was; the outcome is headed "refused"."""


#: How many examples of each kind (added, changed, removed) a diff names.
DIFF_EXAMPLES = 5


class ItemDiff(BaseModel):
    """What the run's item adds, changes and removes against production's item of the
    same name, element by element (rows by primary key, keys by name, points by id),
    with a few examples of each: what a promotion would do to production's readers."""

    #: What elements are matched by: "primary key (id)", "key name", "point id".
    by: str
    unit: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    #: Up to :data:`DIFF_EXAMPLES` of each, as people name them: "id=42", "emb:7".
    examples: dict[str, list[str]] = Field(default_factory=dict)
    #: Whether production holds the item at all (everything is "added" otherwise).
    production_has_it: bool = True
    #: Only what the run wrote since its fork was compared element by element; the rest
    #: is the fork's verified copy of production, which production still holds
    #: (a PostgreSQL table forked whole, production unchanged since: docs/fork.md).
    incremental: bool = False
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def identical(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def summary(self) -> str:
        """``+3 ~2 -1 rows``: for tables and one-line messages."""
        return f"+{self.added:,} ~{self.changed:,} -{self.removed:,} {self.unit}"


class SinceFork(BaseModel):
    """Whether production's item changed since the run was forked from it: its checksum
    now against the one the run's provenance recorded at fork time (``runs.seeds``).

    ``decision`` says what the promotion made of it: ``fast-forward`` (unchanged, so the
    run's item replaces what it started from), ``refused`` (changed, ``--on-conflict
    fail``), ``replace``/``version`` (changed, and the user chose to go on regardless),
    ``as planned`` (unchanged, but the seed was part of the item: nothing implied)."""

    #: The seed's declaration, as recorded.
    seed: dict[str, Any] = Field(default_factory=dict)
    #: The seed copied part of the item (``where=``, ``sample=``, ``limit=``).
    partial: bool = False
    changed: bool
    at_fork: dict[str, Any] | None = None
    #: The run's side at fork time, as its provenance recorded it (``runs.seeds``): the
    #: copy's name, counts and checksum, and what a diff since the fork starts from.
    run: dict[str, Any] = Field(default_factory=dict)
    now: dict[str, Any] | None = None
    #: What changed, in words: "10 rows at fork, 11 now; checksum 1a2b... -> 9f8e...".
    what: str = ""
    decision: str = ""


class ItemPlan(BaseModel):
    """One item of a plan: what will happen to it, and how much data it is."""

    kind: str
    service: str
    #: The item as declared, for people: "redis keys emb:*".
    label: str
    source: str
    #: The name production readers will use: "docs", "scores_v2", "emb:*".
    target: str
    action: Action
    #: Why this action (a conflict's cause; "identical to production").
    reason: str = ""
    unit: str
    source_count: int
    #: What production holds under ``target`` now (None when it holds nothing).
    target_count: int | None = None
    size_bytes: int | None = None
    #: Service-specific figures: keys overwritten and deleted, indexes, dimensions...
    details: dict[str, Any] = Field(default_factory=dict)
    #: Things the user should know: a foreign key not copied, a non-atomic first switch.
    notes: list[str] = Field(default_factory=list)
    #: Where production is, masked.
    target_url: str = ""
    #: The element-by-element diff against production (plans and ``run.diff()``; a
    #: promotion carried out skips it: it reads both items in full).
    diff: ItemDiff | None = None
    #: Whether production changed since the fork; None for an item the run was not
    #: forked from (its diff is against production as it is now, with nothing to check).
    since_fork: SinceFork | None = None


class ItemRecord(BaseModel):
    """One item of a promotion as recorded: the plan, how far it got, what it did."""

    item: dict[str, Any]
    plan: ItemPlan
    state: ItemState = "planned"
    #: Where the staged copy is, so an interrupted promotion can be cleaned up.
    staging: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    #: {"source": {...}, "target": {...}}, compared before the switch.
    checksums: dict[str, Any] = Field(default_factory=dict)
    #: What the switch did and where the replaced data is kept (for rollback).
    switch: dict[str, Any] = Field(default_factory=dict)
    seconds: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class Selection:
    """What part of an item a fork copies: all of it, or ``sample=`` (a fraction, chosen
    by a hash of each element and ``seed``: the same data and seed always select the same
    elements, whatever order a server returns them in), then at most ``limit=`` of those
    (the first ones in a stable order each service documents)."""

    def __init__(self, limit: int | None = None, sample: float | None = None, seed: int = 0):
        self.limit = limit
        self.sample = sample
        self.seed = seed

    @classmethod
    def checked(
        cls, owner: str, limit: Any, sample: Any, seed: Any, *, where: Any = None
    ) -> Selection:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise UsageError(f"{owner}: limit={limit!r} must be a whole number from 1")
        if sample is not None and (
            isinstance(sample, bool)
            or not isinstance(sample, int | float)
            or not 0 < float(sample) <= 1
        ):
            raise UsageError(f"{owner}: sample={sample!r} must be a fraction in (0, 1]")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise UsageError(f"{owner}: seed={seed!r} must be a whole number from 0 to 2**31-1")
        return cls(limit, None if sample is None else float(sample), seed)

    @property
    def partial(self) -> bool:
        return self.limit is not None or self.sample is not None

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.limit is not None:
            out["limit"] = self.limit
        if self.sample is not None:
            out["sample"] = self.sample
            if self.seed:
                out["seed"] = self.seed
        return out

    def keeps(self, element: bytes) -> bool:
        """Whether ``sample=`` keeps an element (a key, a point id): a 64-bit hash of the
        seed and the element below ``sample * 2**64``."""
        if self.sample is None:
            return True
        digest = hashlib.blake2b(element, digest_size=8, key=str(self.seed).encode()).digest()
        return int.from_bytes(digest, "big") < int(self.sample * 2**64)

    def describe(self) -> str:
        parts = []
        if self.sample is not None:
            parts.append(f"sample={self.sample:g}" + (f", seed={self.seed}" if self.seed else ""))
        if self.limit is not None:
            parts.append(f"limit={self.limit:,}")
        return ", ".join(parts)


class Promotable(ABC):
    """A declaration in ``Experiment.promotes``: one item of one service's data."""

    service: ClassVar[str]
    kind: ClassVar[str]
    unit: ClassVar[str]
    #: How the item is named for people: "qdrant collection".
    noun: ClassVar[str]
    #: Does the work: the service's Promoter subclass, defined above its Promotable.
    promoter_class: ClassVar[type[Promoter]]

    #: Does a fork's work (production into the run's stack): the service's Forker subclass;
    #: None for a kind that cannot seed a run.
    forker_class: ClassVar[type[Forker] | None] = None

    def __init__(
        self,
        name: str,
        *,
        target: str | None = None,
        limit: int | None = None,
        sample: float | None = None,
        seed: int = 0,
    ) -> None:
        for what, value in (("name", name), ("target", target)):
            if value is None and what == "target":
                continue
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{type(self).__name__}: {what} must be a non-empty string")
        self.name = name
        self.target = target or name
        self.selection = Selection.checked(type(self).__name__, limit, sample, seed)

    @property
    def label(self) -> str:
        arrow = f" -> {self.target}" if self.target != self.name else ""
        return f"{self.noun} {self.name}{arrow}"

    def options(self) -> dict[str, Any]:
        """Constructor arguments, for records and to rebuild the item later."""
        return {"name": self.name, "target": self.target}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.options(), **self.selection.options()}

    @property
    def selects(self) -> bool:
        """Whether the declaration copies part of the item (``limit=``, ``sample=``,
        ``where=``): meaningful for a fork, refused in ``promotes``."""
        return self.selection.partial

    @property
    def target_key(self) -> str:
        """Identity of the production item, to refuse two items writing the same one."""
        return f"{self.service}:{self.target}"

    def __repr__(self) -> str:
        options = {**self.options(), **self.selection.options()}
        args = ", ".join(f"{k}={v!r}" for k, v in options.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Promotable) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_dict().items())))

    @abstractmethod
    def production_url(self, settings: Settings) -> str:
        """Where this item goes, masked, for plans and records."""

    def promoter(
        self,
        settings: Settings,
        promotion_id: str,
        source: Endpoint | None,
        reporter: Reporter,
    ) -> Promoter:
        """The object that plans, stages and switches this item (source: the run's stack,
        None for what needs production alone: rollback, cleanup, fingerprints)."""
        return self.promoter_class(self, settings, promotion_id, source, reporter)


class Promoter(ABC):
    """One item's promotion work, connected to production (and to the run's stack)."""

    def __init__(
        self,
        item: Promotable,
        settings: Settings,
        promotion_id: str,
        source: Endpoint | None,
        reporter: Reporter,
    ) -> None:
        self.item = item
        self.settings = settings
        self.promotion_id = promotion_id
        self.source = source
        self.reporter = reporter

    @property
    def tag(self) -> str:
        """Short, name-safe form of the promotion id used in staging and kept names."""
        return self.promotion_id[:12]

    def new_plan(self, source_count: int, **fields: Any) -> ItemPlan:
        """A plan for this item, ``create`` until the promoter finds otherwise."""
        item = self.item
        return ItemPlan(
            kind=item.kind,
            service=item.service,
            label=item.label,
            source=item.name,
            target=item.target,
            action="create",
            unit=item.unit,
            source_count=source_count,
            target_url=item.production_url(self.settings),
            **fields,
        )

    def need_source(self) -> Endpoint:
        if self.source is None:
            raise PromotionFailed(f"{self.item.label}: the run's stack is not open")
        return self.source

    @abstractmethod
    def plan(self, on_conflict: OnConflict) -> ItemPlan:
        """Inspect source and production; change nothing."""

    def diff(
        self, examples: int = DIFF_EXAMPLES, since: SinceFork | None = None
    ) -> ItemDiff | None:
        """The run's item against production's ``item.target`` as it is now, element by
        element, reading production only; None for a kind that cannot tell (a plug-in
        that does not implement it). ``since``, for an item the run was forked from, may
        let a kind compare only what the run wrote since the fork."""
        return None

    def reserve(self, record: ItemRecord) -> None:
        """Name in ``record.staging`` the places :meth:`stage` will create, before it
        creates any: the flow records them first, so that what a copy killed half way
        left is found and removed (:meth:`discard_staging`). The default names nothing,
        for a promoter that finds its staging from the promotion id alone."""

    @abstractmethod
    def stage(self, record: ItemRecord, progress: Progress) -> None:
        """Copy into staging and verify; fill ``record.staging``, counts and checksums.

        Raises :class:`PromotionFailed` when the staged copy differs from the source.
        """

    @abstractmethod
    def switch(self, record: ItemRecord) -> None:
        """Make the staged copy the production item in one atomic step; fill
        ``record.switch`` with what was replaced and where it is kept."""

    def intended_switch(self, record: ItemRecord) -> dict[str, Any]:
        """What :meth:`switch` will record in ``record.switch`` (what it replaces, where
        that is kept), known before it runs: recorded with the commit, so that a switch
        whose process died before recording it can still be rolled back."""
        return {}

    @abstractmethod
    def unswitch(self, record: ItemRecord) -> None:
        """Undo :meth:`switch` atomically: what it replaced is back, what it created gone."""

    @abstractmethod
    def is_switched(self, record: ItemRecord) -> bool:
        """For a promotion interrupted during the switch: did the switch happen?"""

    @abstractmethod
    def target_checksum(self, record: ItemRecord) -> dict[str, Any] | None:
        """Checksum of what production holds now under the record's target, in the form
        recorded as ``checksums["target"]``; None when it holds nothing."""

    @abstractmethod
    def discard_staging(self, record: ItemRecord) -> list[str]:
        """Remove what :meth:`stage` left (on failure, or after an interruption), even
        from a copy killed half way; returns what it removed, for the record (nothing
        when there was nothing: a record says only what was done)."""

    @abstractmethod
    def drop_replaced(self, record: ItemRecord) -> None:
        """Delete the replaced data kept for rollback (``omnilab promotions prune``)."""

    def close(self) -> None:
        """Close connections."""


# -- checksums --------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


class Sum64:
    """An order-independent checksum: the sum, modulo 2**64, of each element's hash.

    Each copy path reads elements in its own order (SCAN order, COPY order, scroll
    order), so the combination must not depend on it. Elements are unique (keys, point
    ids) or counted (rows), so a sum (not XOR, under which duplicates cancel) is sound.
    """

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def add(self, data: bytes) -> None:
        digest = hashlib.blake2b(data, digest_size=8).digest()
        self.total = (self.total + int.from_bytes(digest, "big")) & _MASK64
        self.count += 1

    def add_int(self, value: int) -> None:
        self.total = (self.total + value) & _MASK64
        self.count += 1

    @property
    def hex(self) -> str:
        return f"{self.total:016x}"


# -- progress ---------------------------------------------------------------------------


#: Makes the promoting process stop at a named step (until it is killed), for the tests
#: of interrupted promotions: ``copying:<service>`` (once the first batch of that
#: service's item is copied), ``committed`` (every item staged and verified),
#: ``switched:<service>`` (that item switched and recorded), ``reading:qdrant`` (the run's
#: collection read for its checksum as its shards move); and of interrupted forks:
#: ``seeding:<service>``, ``moving:qdrant``, ``caching:<service>``.
PAUSE_ENV = "OMNILAB_PROMOTE_PAUSE_AT"


class CopyStopped(Exception):
    """A copy stopped because another one beside it failed or was interrupted."""


T = TypeVar("T")


def in_background(call: Callable[[], T], name: str) -> Future[T]:
    """``call`` in a daemon thread of its own, for one blocking request that a server of
    the run's stack carries out while this process reads beside it (a shard downloaded or
    loaded by the run's Qdrant).

    Not a ``ThreadPoolExecutor``: leaving its block waits for the request, and so does
    the interpreter's exit, so Ctrl-C would wait for the whole transfer (seconds to
    minutes). A copy interrupted here stops waiting at once; the request ends by itself
    when the stack that serves it is removed, and a daemon thread holds no exit."""
    future: Future[T] = Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = call()
        except BaseException as exc:  # handed to whoever waits, as a pool would
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def pause_point(step: str) -> None:
    """Stop here for good if ``OMNILAB_PROMOTE_PAUSE_AT`` names this step, saying so on
    stderr first: whoever rehearses a crash (README, "Rehearsing a crash"; the tests of
    interrupted promotions and forks) kills the process at a known moment, where
    watching servers from outside would race with the copy."""
    if os.environ.get(PAUSE_ENV) != step:
        return
    sys.stderr.write(f"promotion paused at {step} (pid {os.getpid()})\n")
    sys.stderr.flush()
    while True:
        time.sleep(3600)


class Progress:
    """Progress of one copy: a line every few seconds (long copies say how far they are),
    a bar on a terminal (the reporter's :meth:`~omnilab.progress.Reporter.task`)."""

    def __init__(
        self, reporter: Reporter, label: str, total: int, unit: str, *, step: str = ""
    ) -> None:
        self.reporter = reporter
        self.label = label
        self.total = total
        self.unit = unit
        #: The pause point after the first batch (see :func:`pause_point`).
        self.step = step
        self.done = 0
        self.began = time.monotonic()
        self._task = reporter.task(label, total, unit, verb="copied")

    #: Set by whoever runs several copies at once when one of them failed or the user
    #: interrupted: the others stop at their next batch (:class:`CopyStopped`).
    stop: threading.Event | None = None

    def advance(self, n: int) -> None:
        self.done += n
        if self.step:
            pause_point(self.step)
        self.check()
        self._task.advance(n)

    def check(self, _read: int = 0) -> None:
        """Raise :class:`CopyStopped` if the copies were told to stop: for the steps of a
        copy that advance no bar (a verification's read takes it as its callback)."""
        if self.stop is not None and self.stop.is_set():
            raise CopyStopped(f"{self.label}: stopped after {self.done:,} {self.unit}")

    def wait(self, future: Future[Any]) -> None:
        """Wait for work done beside the copy (:func:`in_background`), stopping when the
        copies are told to, or at Ctrl-C, rather than when the work ends."""
        while not future.done():
            self.check()
            wait_for([future], timeout=0.1)

    def restart(self) -> None:
        """The copy begins again (another way, after the first could not finish)."""
        self.done = 0
        self._task.update(completed=0)

    def close(self) -> None:
        """The copy is over (done or not): its bar goes."""
        self._task.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.began


def kinds_hint(*, seeds: bool = False) -> str:
    """``QdrantCollection(...), RedisKeys(...) or PostgresTable(...) from omnilab.promote``:
    the promotable kinds of the plug-in registry (with ``seeds``, those that can seed a
    run), for messages that say what to use instead; a third party's are named with
    their module."""
    from omnilab import plugins

    by_module: dict[str, list[str]] = {}
    for cls in plugins.available("promotable").values():
        if not (isinstance(cls, type) and issubclass(cls, Promotable)):
            continue
        if seeds and cls.forker_class is None:
            continue
        module = "omnilab.promote" if cls.__module__.startswith("omnilab.") else cls.__module__
        by_module.setdefault(module, []).append(f"{cls.__name__}(...)")
    parts = []
    for module, names in by_module.items():
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        parts.append(f"{listed} from {module}")
    return "; ".join(parts) or "a promotable kind (none is installed)"


def check_promotes(promotes: Any, service_names: list[str], owner: str) -> list[Promotable]:
    """Validate ``Experiment.promotes`` before anything starts (bad input: UsageError)."""
    if not isinstance(promotes, list | tuple):
        raise UsageError(f"{owner}.promotes must be a list, like [RedisKeys('emb:*')]")
    checked: list[Promotable] = []
    targets: dict[str, Promotable] = {}
    for item in promotes:
        if isinstance(item, Promotable) and item.selects:
            raise UsageError(
                f"{owner}.promotes: {item!r}: limit=, sample= and where= choose what a fork "
                "copies (Experiment.seeds); a promotion copies the whole item"
            )
        if not isinstance(item, Promotable):
            raise UsageError(f"{owner}.promotes: {item!r} is not promotable; use {kinds_hint()}")
        if item.service not in service_names:
            raise UsageError(
                f"{owner}.promotes: {item!r} needs the {item.service} service; "
                f"add {item.service.capitalize()}() to {owner}.services"
            )
        if item.target_key in targets:
            raise UsageError(
                f"{owner}.promotes: {item!r} and {targets[item.target_key]!r} "
                "write the same production item"
            )
        targets[item.target_key] = item
        checked.append(item)
    return checked
