"""Settings of the queue, its workers and the HTTP API (on top of :class:`Settings`).

A subclass rather than more fields on ``Settings``: ``omnilab run`` never needs these,
and every value here is read from the same environment, ``.env.system`` and config file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from omnilab.config import Settings, describe_validation_error
from omnilab.errors import UsageError
from omnilab.requirements import parse_labels


class QueueSettings(Settings):
    experiments_dir: Path = Field(
        default=Path("experiments"),
        validation_alias="OMNILAB_EXPERIMENTS_DIR",
        description="The only experiments the API may queue and workers may run.",
    )
    queue: str = Field(
        default="omnilab",
        validation_alias="OMNILAB_QUEUE",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="The shared queue's name in Redis; each worker host also has its own, "
        "'<queue>@<host>' ('<queue>-gpu@<host>' for runs that need a GPU).",
    )
    api_host: str = Field(default="127.0.0.1", validation_alias="OMNILAB_API_HOST")
    api_port: int = Field(default=8765, ge=1, le=65535, validation_alias="OMNILAB_API_PORT")
    api_max_body: int = Field(
        default=1 << 20,
        ge=1024,
        validation_alias="OMNILAB_API_MAX_BODY",
        description="Largest request body accepted, in bytes; larger ones get 413.",
    )
    api_key_cache_s: float = Field(
        default=5.0,
        ge=0,
        validation_alias="OMNILAB_API_KEY_CACHE",
        description="How long a checked API key is trusted without asking the store again "
        "(a revoked key stops working within this time).",
    )
    run_retries: int = Field(
        default=0,
        ge=0,
        le=10,
        validation_alias="OMNILAB_RUN_RETRIES",
        description="Default number of times a run is queued again when its worker dies.",
    )
    worker_ttl: float = Field(
        default=30.0,
        gt=0,
        validation_alias="OMNILAB_WORKER_TTL",
        description="Seconds without a heartbeat after which a worker is taken for dead.",
    )
    reconcile_interval: float = Field(
        default=5.0,
        gt=0,
        validation_alias="OMNILAB_RECONCILE_INTERVAL",
        description="How often the API and workers re-send lost messages and end lost runs.",
    )
    resend_after: float = Field(
        default=2.0,
        ge=0,
        validation_alias="OMNILAB_RESEND_AFTER",
        description="A queued run whose message is not in Redis after this long is re-sent.",
    )
    host_task_start_timeout: float = Field(
        default=30.0,
        gt=0,
        validation_alias="OMNILAB_HOST_TASK_START_TIMEOUT",
        description="Seconds the worker of the host that holds a run's data has to start "
        "a promotion, rollback or discard handed to it before the caller gives up (nothing "
        "is done then).",
    )
    host_task_timeout: float = Field(
        default=3600.0,
        gt=0,
        validation_alias="OMNILAB_HOST_TASK_TIMEOUT",
        description="Seconds the caller waits for the outcome of a task handed to another "
        "host, once started.",
    )
    retention_sweep_interval: float = Field(
        default=60.0,
        gt=0,
        validation_alias="OMNILAB_RETENTION_SWEEP_INTERVAL",
        description="How often a worker removes its host's kept stack data past "
        "OMNILAB_RETENTION_DAYS.",
    )
    worker_labels: str = Field(
        default="",
        validation_alias="OMNILAB_WORKER_LABELS",
        description="Labels of `omnilab worker` ('zone=a,disk=ssd'; --label adds to them): "
        "runs whose Experiment.requires names them go to its host.",
    )

    @field_validator("worker_labels")
    @classmethod
    def _labels(cls, value: str) -> str:
        try:
            parse_labels(value, "label")
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def labels(self) -> dict[str, str]:
        return parse_labels(self.worker_labels, "label")

    log_stream_maxlen: int = Field(
        default=10_000,
        ge=0,
        validation_alias="OMNILAB_LOG_STREAM_MAXLEN",
        description="Pieces of a queued run's log (8 KiB at most each) its Redis stream "
        "keeps, for API hosts that do not have the log's file; 0: no stream.",
    )
    log_stream_ttl_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        validation_alias="OMNILAB_LOG_STREAM_TTL",
        description="Seconds a run's log stream is kept in Redis after the run ends.",
    )
    web_secret: str | None = Field(
        default=None,
        validation_alias="OMNILAB_WEB_SECRET",
        description="Signs the web UI's session cookies; unset: a random one per server "
        "start (sessions then end when the server stops).",
    )
    web_session_s: float = Field(
        default=8 * 3600.0,
        gt=0,
        validation_alias="OMNILAB_WEB_SESSION",
        description="Seconds a web UI sign-in lasts.",
    )


def get_queue_settings() -> QueueSettings:
    """Read now (not cached), like :func:`omnilab.config.get_settings`; a bad value is
    one line naming it, as there."""
    from pydantic import ValidationError

    try:
        return QueueSettings()
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc, QueueSettings)) from None
