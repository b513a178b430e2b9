"""Forking a run from production: ``Experiment.seeds`` copied into its stack before ``run()``.

The runner calls this module twice. :meth:`Fork.prepare`, with the other checks, before
anything starts: the seeds are resolved (the ``seeds`` list, or ``seeds(self, params)``),
checked, and production is asked, read-only, whether it holds each one; a missing seed is
a usage error and production out of reach one line naming it, with nothing started.
:meth:`Fork.copy`, once the stack is up and the run recorded: each item is copied with
its progress bar, verified, and its provenance (production's counts and checksum at fork
time) returned for the run's record. The work per service is its
:class:`~omnilab.services.forking.Forker`, beside its promotion code.

Nothing here depends on the runtime: the copy reaches the run's servers through the
stack's endpoints, as promotion does, so local and docker stacks, and runs a queue worker
executes, fork the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnilab.errors import OmnilabError, UsageError
from omnilab.services.promotable import Progress, Promotable, kinds_hint

if TYPE_CHECKING:
    from omnilab.config import Settings
    from omnilab.experiment import Experiment, Params
    from omnilab.progress import Reporter
    from omnilab.resources import Bounds
    from omnilab.services.forking import Forker
    from omnilab.stack import Stack


def declared_seeds(cls: type[Experiment], params: Params) -> list[Promotable]:
    """The experiment's seeds: its ``seeds`` list, or what its ``seeds(self, params)``
    returns for these parameters; checked (bad input: a one-line UsageError)."""
    owner = cls.__name__
    declared: Any = getattr(cls, "seeds", [])
    if callable(declared):  # a method: seeds(self, params)
        try:
            declared = declared(cls(), params)
        except OmnilabError:
            raise
        except Exception as exc:
            raise UsageError(f"{owner}.seeds(params) failed: {type(exc).__name__}: {exc}") from None
    return check_seeds(declared or [], cls.service_names(), owner)


def check_seeds(seeds: Any, service_names: list[str], owner: str) -> list[Promotable]:
    """Each seed is an item a fork can copy, of a service the experiment has, and no two
    write the same item of the run's stack."""
    if not isinstance(seeds, list | tuple):
        raise UsageError(f"{owner}.seeds must be a list, like [PostgresTable('users')]")
    names: dict[str, Promotable] = {}
    for item in seeds:
        if not isinstance(item, Promotable) or item.forker_class is None:
            raise UsageError(
                f"{owner}.seeds: {item!r} cannot seed a run; use {kinds_hint(seeds=True)}"
            )
        if item.service not in service_names:
            raise UsageError(
                f"{owner}.seeds: {item!r} needs the {item.service} service; "
                f"add {item.service.capitalize()}() to {owner}.services"
            )
        key = f"{item.service}:{item.name}"
        if key in names:
            raise UsageError(f"{owner}.seeds: {item!r} and {names[key]!r} write the same item")
        names[key] = item
    return list(seeds)


class Fork:
    """The seeds of one run, with their services' forkers connected to production."""

    def __init__(self, seeds: list[Promotable], settings: Settings, reporter: Reporter) -> None:
        self.seeds = seeds
        self.settings = settings
        self.reporter = reporter
        self.counts: dict[str, int] = {}
        self.forkers: dict[str, Forker] = {}
        for item in seeds:
            if item.service not in self.forkers:
                assert item.forker_class is not None
                same = [s for s in seeds if s.service == item.service]
                self.forkers[item.service] = item.forker_class(same, settings, reporter)

    @classmethod
    def prepare(
        cls,
        seeds: list[Promotable],
        settings: Settings,
        reporter: Reporter,
        *,
        bounds: Mapping[str, Bounds] | None = None,
        folder: Path | None = None,
    ) -> Fork:
        """Connect to production and check every seed; nothing is started or written.
        With ``bounds`` (the stack's, by service) or ``folder`` (where the run's data
        goes, for a runtime that enforces none), a fork that would not fit is refused
        (:meth:`check_fit`). Refused where the production variables name experiment
        services (``ENVIRONMENT=docker_experiments``, in a container on a stack's
        network), as a promotion is: a copy from there would be recorded as production's."""
        if settings.environment == "docker_experiments":
            raise UsageError(
                "ENVIRONMENT=docker_experiments: QDRANT_URL, REDIS_URL and POSTGRES_URL point "
                "at experiment services here, not at production; fork from the host, or run "
                "without seeds (--no-seed, fork=False)"
            )
        fork = cls(seeds, settings, reporter)
        try:
            for forker in fork.forkers.values():
                fork.counts.update(forker.check())
            if bounds is not None or folder is not None:
                fork.check_fit(bounds or {}, folder)
        except BaseException:
            fork.close()
            raise
        return fork

    def check_fit(self, bounds: Mapping[str, Bounds], folder: Path | None) -> None:
        """Refuse, before anything is copied, a fork whose estimated size (production's
        counts and sizes, :attr:`Forker.sizes`) exceeds what the run's server may hold:
        the service's bound where the runtime enforces one (``disk``, or ``memory`` for
        a server that keeps its data in memory), else the free space of the run's data
        folder, shared by every item. One line names the item, its estimate and the
        bound (a usage error: nothing started)."""
        import shutil

        used: dict[tuple[str, ...], int] = {}
        for item in self.seeds:
            forker = self.forkers[item.service]
            size = forker.sizes.get(item.label)
            if size is None:
                continue
            bound = bounds.get(item.service)
            if bound is not None:
                limit = getattr(bound, forker.bound, None)
                key: tuple[str, ...] = (item.service, forker.bound)
                where = f"the {item.service} service's {forker.bound} bound"
                fix = "raise it in Experiment.resources, or seed less (where=, sample=, limit=)"
            elif folder is not None:
                place = _existing(folder)
                limit = shutil.disk_usage(place).free
                key = ("free disk",)
                where = f"the free disk space of {place}"
                fix = "free some, or seed less (where=, sample=, limit=)"
            else:
                continue
            if limit is None:
                continue
            used[key] = used.get(key, 0) + size
            if used[key] > limit:
                before = used[key] - size
                also = f" (with {_size(before)} of seeds before it)" if before else ""
                raise UsageError(
                    f"seed {item.label}: about {_size(size)}{also} would not fit "
                    f"{where} ({_size(limit)}); {fix}"
                )

    def copy(self, stack: Stack) -> list[dict[str, Any]]:
        """Copy and verify every seed into ``stack``; returns their provenance, as the run
        records it, in the order declared.

        Each service's seeds are copied in the order declared, and the services at once,
        one thread each: they read and write different servers, and each copy waits on
        its servers much of the time. When one fails (or the user interrupts), the others
        stop at their next batch and are waited for, so nothing writes into the stack
        once this returns or raises."""
        n = len(self.seeds)
        self.reporter.note(f"forking {n} item{'s' if n != 1 else ''} from production")
        records: list[dict[str, Any]] = [{} for _ in self.seeds]
        by_service: dict[str, list[int]] = {}
        for index, item in enumerate(self.seeds):
            by_service.setdefault(item.service, []).append(index)
        stop = threading.Event()

        def work(indexes: list[int]) -> None:
            for index in indexes:
                if stop.is_set():
                    return  # another service's copy failed: start no other
                records[index] = self._copy_one(self.seeds[index], stack, stop)

        try:
            if len(by_service) == 1:
                work(list(range(n)))
            else:
                with ThreadPoolExecutor(
                    max_workers=len(by_service), thread_name_prefix="omnilab-fork"
                ) as pool:
                    futures = [pool.submit(work, indexes) for indexes in by_service.values()]
                    try:
                        for future in as_completed(futures):
                            future.result()
                    except BaseException:
                        stop.set()  # the others stop at their next batch; `with` waits
                        raise
        finally:
            self.close()
        return records

    def _copy_one(self, item: Promotable, stack: Stack, stop: threading.Event) -> dict[str, Any]:
        forker = self.forkers[item.service]
        total = self.counts.get(item.label, 0)
        began = time.monotonic()
        label = f"seed {item.label}"
        # The pause point (tests of interrupted forks): seeding:<service>.
        step = f"seeding:{item.service}"
        with Progress(self.reporter, label, total, item.unit, step=step) as progress:
            progress.stop = stop
            provenance = forker.copy(item, stack.endpoint(item.service), progress)
        seconds = time.monotonic() - began
        # Redis keys are not cached (docs/fork.md, the fork cache).
        provenance.setdefault(
            "cache",
            {"served": False, "stored": False, "off": "not cached for this service"},
        )
        copied = _copied(provenance)
        how = "restored from the fork cache" if _served(provenance) else "copied"
        self.reporter.note(
            f"  seed {item.label}: {copied:,} {item.unit} {how} and verified ({seconds:.1f}s)"
        )
        return {
            "kind": item.kind,
            "service": item.service,
            "label": item.label,
            "item": item.to_dict(),
            "url": item.production_url(self.settings),
            "consistency": forker.consistency,
            **provenance,
        }

    def close(self) -> None:
        for forker in self.forkers.values():
            forker.close()


def _size(number: int) -> str:
    """``2621440`` -> ``2.5 MiB``, ``1048576`` -> ``1 MiB``: an estimate, as people read it."""
    for name, unit in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if number >= unit:
            whole = number % unit == 0
            return f"{number // unit} {name}" if whole else f"{number / unit:.1f} {name}"
    return f"{number} B"


def _existing(folder: Path) -> Path:
    """The folder, or its nearest existing parent (a data folder made at the start)."""
    for place in (folder, *folder.parents):
        if place.exists():
            return place
    return folder


def _copied(provenance: dict[str, Any]) -> int:
    run = provenance.get("run") or {}
    for unit in ("rows", "keys", "points"):
        if unit in run:
            return int(run[unit])
    return 0


def _served(provenance: dict[str, Any]) -> bool:
    """Whether the item came from the fork cache rather than from production's rows."""
    return bool((provenance.get("cache") or {}).get("served"))


def describe(seeds: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each recorded seed in a few words, for ``omnilab runs show`` and the run card:
    the item, how much production held and how much was copied, production's checksum."""
    out = []
    for seed in seeds:
        production = seed.get("production") or {}
        unit = next((u for u in ("rows", "keys", "points") if u in production), "")
        checksum = production.get("checksum") or {}
        digest = checksum.get("sum") or checksum.get("xor128") or ""
        selected = production.get("selected")
        whole = production.get(unit)
        amount = f"{selected:,} {unit}"
        if unit != "keys" and whole is not None and whole != selected:
            amount = f"{selected:,} of {whole:,} {unit}"
        if _served(seed):
            amount += " (from the fork cache)"
        out.append(
            {
                "item": str(seed.get("label", "")),
                "production": str(seed.get("url", "")),
                "copied": amount if selected is not None else "-",
                "checksum": str(digest)[:16],
            }
        )
    return out
