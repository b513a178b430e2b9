"""Rows of the tracking store as typed values."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from omnilab.errors import UsageError

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

#: A run's tag: one word, as typed after ``--tag`` and matched exactly by ``runs ls --tag``.
TAG_PATTERN = r"^[A-Za-z0-9_.:/=+@-]{1,64}$"
#: A run's name: free text on one line.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"
MAX_TAGS = 20


def check_name_and_tags(
    name: str | None, tags: list[str] | tuple[str, ...] | None
) -> tuple[str | None, list[str]]:
    """A run's name and tags as stored (name stripped, tags without repeats), or a
    one-line :class:`UsageError` naming what is wrong, before anything starts."""
    if name is not None:
        name = name.strip()
        if not re.fullmatch(NAME_PATTERN, name):
            raise UsageError(f"run name {name!r}: use 1 to 100 characters on one line")
    unique = list(dict.fromkeys(tags or ()))
    for tag in unique:
        if not isinstance(tag, str) or not re.fullmatch(TAG_PATTERN, tag):
            raise UsageError(
                f"tag {tag!r}: use 1 to 64 letters, digits or _ . : / = + @ - (no spaces)"
            )
    if len(unique) > MAX_TAGS:
        raise UsageError(f"{len(unique)} tags: a run takes at most {MAX_TAGS}")
    return name, unique


class RunRecord(BaseModel):
    """One run, as stored. Secrets never reach it: stacks describe themselves masked."""

    id: str
    experiment: str
    source: str | None = None
    status: RunStatus
    params: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: str | None = None
    runtime: str | None = None
    stack: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    git_commit: str | None = None
    owner: str | None = None
    run_dir: str | None = None
    timings: dict[str, Any] = Field(default_factory=dict)
    #: What the run was forked from: per seed, production's counts and checksum at fork
    #: time and the run's copy (None: the run had no seeds, or ran with --no-seed).
    seeds: list[dict[str, Any]] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: Given by whoever started the run (``--name``, ``--tag``), to find it again by.
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    #: What the worker that takes it must offer (``Experiment.requires`` and what its
    #: ``gpu`` and ``isolation`` imply); None: any worker.
    requires: dict[str, Any] | None = None
    #: The experiment file's content hash (sha256) it was queued against, or ran.
    code_sha256: str | None = None
    #: Queued, and no live worker can take it: ``waiting for capacity: <why>``.
    waiting: str | None = None
    #: Where the run's artifacts and log went when it ended (``OMNILAB_ARTIFACTS_URL``
    #: then); None: they are in ``run_dir``, on the host that ran it.
    artifacts_url: str | None = None
    #: What that upload did (files, bytes, seconds, the log's size and sha256), or its
    #: ``error`` and where the files stayed (``local``, ``host``).
    artifacts_upload: dict[str, Any] | None = None

    @property
    def host(self) -> str | None:
        """The host that ran it (its process's, as recorded when it started)."""
        value = (self.environment or {}).get("hostname")
        return str(value) if value else None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def label(self) -> str:
        """``3fa2c1d8`` or ``3fa2c1d8 (baseline)``: how a message names the run."""
        return f"{self.short_id} ({self.name})" if self.name else self.short_id

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class MetricPoint(BaseModel):
    key: str
    step: int
    value: float
    timestamp: datetime


class MetricSummary(BaseModel):
    """Per metric name: where it ended and the range it went through."""

    key: str
    count: int
    last: float
    last_step: int
    min: float
    max: float


class ArtifactRecord(BaseModel):
    path: str
    size: int
    sha256: str
    created_at: datetime | None = None


RUN_COLUMNS: tuple[str, ...] = tuple(RunRecord.model_fields)
