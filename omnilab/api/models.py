"""What the HTTP API takes and returns (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from omnilab.tracking.records import MAX_TAGS, NAME_PATTERN, TAG_PATTERN, RunStatus

EXPERIMENT_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$"
#: A run id or a unique prefix of one (at least 4 characters), as the CLI accepts.
RUN_ID = r"^[0-9a-f]{4,32}$"


class Problem(BaseModel):
    """Every error: one line naming the problem (422s list one entry per bad field)."""

    detail: str | list[dict[str, Any]]


class RunRequest(BaseModel):
    """Queue a run of an experiment of the server's experiments folder."""

    model_config = ConfigDict(extra="forbid")

    experiment: str = Field(
        min_length=1, max_length=200, description="An experiment's name (GET /v1/experiments)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Values for the experiment's Params model; omitted ones take its defaults.",
    )
    retries: int | None = Field(
        default=None,
        ge=0,
        le=10,
        description="How many times the run is queued again if its worker dies during it "
        "(default: the server's OMNILAB_RUN_RETRIES, 0 unless set).",
    )
    name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="A name for the run, shown wherever it is (one line, 1-100 characters).",
    )
    tags: list[Annotated[str, StringConstraints(pattern=TAG_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_TAGS,
        description="Tags to find the run by (GET /v1/runs?tag=...): one word each.",
    )

    @field_validator("retries", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if isinstance(value, bool | str):
            raise ValueError("Input should be a valid integer")
        return value


class ExperimentOut(BaseModel):
    name: str
    description: str
    file: str = Field(description="Its file, relative to the server's experiments folder.")
    services: list[str]
    gpu: bool | Literal["auto"]
    requires: dict[str, Any] | None = Field(
        default=None,
        description="What a worker must offer to run it (Experiment.requires, with what gpu "
        "and isolation imply); null: any worker.",
    )
    sha256: str = Field(
        default="", description="Its file's content hash: the code a run queued now is run with."
    )


class ExperimentDetail(ExperimentOut):
    params_schema: dict[str, Any] = Field(description="JSON Schema of the experiment's Params.")


class ExperimentList(BaseModel):
    experiments: list[ExperimentOut]
    problems: list[str] = Field(
        description="Files of the experiments folder that could not be loaded, and why."
    )


class QueueOut(BaseModel):
    queue: str
    attempt: int
    max_attempts: int
    queued_at: datetime
    worker: str | None = None
    gpu: str | None = Field(default=None, description="CUDA_VISIBLE_DEVICES the attempt got.")
    host: str | None = Field(
        default=None,
        description="The worker host it was placed on (its queue is '<queue>@<host>'); "
        "null: a shared queue.",
    )
    cancel_requested_at: datetime | None = None
    history: list[dict[str, Any]] = Field(
        default_factory=list, description="Earlier attempts and how they ended."
    )


class MetricSummaryOut(BaseModel):
    count: int
    last: float | None
    last_step: int
    min: float | None
    max: float | None


class ArtifactOut(BaseModel):
    path: str
    size: int
    sha256: str
    #: Where this server gives it (GET, read scope), wherever the run's files are kept.
    url: str | None = None


class RunOut(BaseModel):
    id: str
    experiment: str
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    status: RunStatus
    params: dict[str, Any]
    summary: dict[str, Any] | None = None
    error: str | None = None
    owner: str | None = None
    runtime: str | None = None
    git_commit: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    timings: dict[str, Any] = Field(default_factory=dict)
    host: str | None = Field(default=None, description="The host that ran it.")
    requires: dict[str, Any] | None = Field(
        default=None, description="What its worker must offer; null: any worker."
    )
    code_sha256: str | None = Field(
        default=None,
        description="Its experiment file's content hash when it was queued (a worker whose "
        "file differs refuses it).",
    )
    waiting: str | None = Field(
        default=None,
        description="Why no live worker can take it yet ('waiting for capacity: ...'); "
        "null when it is placed, running or done.",
    )
    queue: QueueOut | None = Field(
        default=None, description="Absent for runs started with `omnilab run`."
    )
    metrics: dict[str, MetricSummaryOut] | None = Field(
        default=None, description="Last value and range of each metric (single-run views)."
    )
    artifacts: list[ArtifactOut] | None = None
    stack: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    seeds: list[dict[str, Any]] | None = Field(
        default=None,
        description="What the run was forked from (single-run views): per seed, "
        "production's counts and checksum at fork time and the run's copy.",
    )
    links: dict[str, str] = Field(default_factory=dict)


class RunPage(BaseModel):
    runs: list[RunOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last.")


class MetricPointOut(BaseModel):
    step: int
    value: float | None = Field(description="null for NaN or infinite values.")
    timestamp: datetime


class MetricSeries(BaseModel):
    summary: MetricSummaryOut
    points: list[MetricPointOut]
    truncated: bool = Field(description="More points follow: ask again with after_step.")


class MetricsOut(BaseModel):
    run_id: str
    metrics: dict[str, MetricSeries]


class CancelOut(BaseModel):
    id: str
    status: RunStatus
    detail: str


class GpuOut(BaseModel):
    id: str = Field(description="The GPU's index or UUID, as given to the worker.")
    model: str | None = Field(description="As nvidia-smi names it; null where it says nothing.")
    memory_mib: int | None


class WorkerOut(BaseModel):
    id: str
    host: str
    status: Literal["alive", "stopped", "lost"] = Field(
        description="alive: heartbeat within OMNILAB_WORKER_TTL; stopped: it ended (or a "
        "sweeper ended it); lost: silent past the TTL, not ended yet."
    )
    alive: bool
    pid: int
    concurrency: int
    gpus: list[str]
    gpu_details: list[GpuOut] = Field(description="Each GPU it hands out, one run at a time.")
    runtimes: list[str] = Field(description="Runtimes that work on its host.")
    labels: dict[str, str]
    queues: list[str]
    version: str | None
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None
    running: list[str] = Field(description="Ids of the runs it is running now.")


class WorkerList(BaseModel):
    workers: list[WorkerOut]


Reachable = Literal["ok", "unreachable"]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    tracking_store: Reachable
    queue: Reachable
    experiments: int
    workers: int | None = Field(description="Live workers; null when the store is unreachable.")
