"""What a promotion returns: a plan, an outcome, JSON-able for the CLI and the HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from omnilab.services.promotable import ItemRecord

#: ``refused``: stopped on purpose before any switch (a conflict, an item production
#: cannot accept, a staged copy that does not match); ``failed``: something broke.
#: Production is as it was in both. ``declined``: ``accept(summary)`` said no.
ResultStatus = Literal["planned", "nothing_to_do", "succeeded", "refused", "failed", "declined"]


class PromotionResult(BaseModel):
    """The plan (``dry_run``) or the outcome of promoting one run.

    ``items`` holds, per declared item, the plan (source, target, create / replace /
    version / nothing / conflict, counts, sizes) and, once carried out, counts and
    checksums of source and target and where what was replaced is kept.
    ``result.model_dump(mode="json")`` is what ``--json`` prints and the API returns.
    """

    #: The promotion's id (recorded); None for a plan or when there was nothing to do.
    id: str | None = None
    run_id: str
    experiment: str
    #: The run's name (``--name``), shown beside its id.
    run_name: str | None = None
    status: ResultStatus
    dry_run: bool = False
    on_conflict: str
    actor: str
    items: list[ItemRecord] = Field(default_factory=list)
    error: str | None = None
    #: Why it was not promoted, when that is no error (``declined``).
    reason: str | None = None
    seconds: float = 0.0
    #: What became of the run's kept stack data ("released", "kept").
    data: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("planned", "nothing_to_do", "succeeded")

    @property
    def refused_items(self) -> list[ItemRecord]:
        """The items that refused the promotion before any copy (their reasons say why)."""
        return [i for i in self.items if i.plan.action in ("conflict", "incompatible")]

    @property
    def conflicts(self) -> list[ItemRecord]:
        return [i for i in self.items if i.plan.action == "conflict"]

    def _repr_html_(self) -> str:
        from omnilab.notebook.promotion import promotion_html

        return promotion_html(self)


class RunDiff(BaseModel):
    """``run.diff()``: per promoted item, what the run adds, changes and removes against
    production (``plan.diff``), and whether production changed since the fork
    (``plan.since_fork``). A table in a notebook; ``to_pandas()`` for a frame."""

    run_id: str
    experiment: str
    items: list[ItemRecord] = Field(default_factory=list)

    def rows(self) -> list[dict[str, object]]:
        """One row per item: counts, a few examples of each, and the fork check."""
        out: list[dict[str, object]] = []
        for item in self.items:
            plan, diff, since = item.plan, item.plan.diff, item.plan.since_fork
            examples = (diff.examples if diff else {}) or {}
            out.append(
                {
                    "item": plan.label,
                    "target": plan.target,
                    "by": diff.by if diff else None,
                    "added": diff.added if diff else None,
                    "changed": diff.changed if diff else None,
                    "removed": diff.removed if diff else None,
                    "added_examples": list(examples.get("added", [])),
                    "changed_examples": list(examples.get("changed", [])),
                    "removed_examples": list(examples.get("removed", [])),
                    "forked": since is not None,
                    "changed_since_fork": since.changed if since else None,
                    "action": plan.action,
                }
            )
        return out

    def to_pandas(self) -> object:
        """The rows as a pandas DataFrame (pandas is optional: ImportError says so)."""
        from omnilab.notebook.frames import diff_frame

        return diff_frame(self.rows())

    def _repr_html_(self) -> str:
        from omnilab.notebook.promotion import diff_html

        return diff_html(self)


class RollbackResult(BaseModel):
    """What ``omnilab rollback`` restored (or, with ``dry_run``, would restore)."""

    promotion_id: str
    run_id: str
    #: The promoted run's experiment and name, to say which run as every command does.
    experiment: str | None = None
    run_name: str | None = None
    dry_run: bool = False
    status: Literal["planned", "rolled_back", "partial"]
    #: Per item: target, what is restored, what is removed, state.
    items: list[dict[str, object]] = Field(default_factory=list)
    error: str | None = None
