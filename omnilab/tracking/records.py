"""Rows of the tracking store as typed values."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


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
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def short_id(self) -> str:
        return self.id[:8]

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
