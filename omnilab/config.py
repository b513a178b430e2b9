"""Settings read from the environment and ``.env.system``.

The names are the production team's own (``QDRANT_URL``, ``REDIS_URL``, ``POSTGRES_URL``,
``OLLAMA_BASE_URL``, ``ENVIRONMENT``) so that one ``.env.system`` configures both the
production services and omnilab. omnilab's own knobs are prefixed ``OMNILAB_``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_QDRANT_URL = "http://localhost:6333"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://localhost:5432/omnimind"
DEFAULT_OLLAMA_URL = "http://localhost:11434"


def _state_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "omnilab"


class Settings(BaseSettings):
    """All configuration in one validated object.

    ``postgres_url`` is deliberately optional: when it is unset the tracking store is an
    embedded PostgreSQL under ``.omnilab/``, while promotion still targets the production
    default ``postgresql://localhost:5432/omnimind`` (see :attr:`production_postgres_url`).
    """

    model_config = SettingsConfigDict(
        env_file=".env.system",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    environment: Literal["production", "docker_experiments"] = Field(
        default="production", validation_alias="ENVIRONMENT"
    )
    qdrant_url: str = Field(default=DEFAULT_QDRANT_URL, validation_alias="QDRANT_URL")
    qdrant_api_key: str | None = Field(default=None, validation_alias="QDRANT_API_KEY")
    #: Production Qdrant's gRPC port (promotions read and write points over it); unset,
    #: the port after the one in ``QDRANT_URL`` (6333 -> 6334, Qdrant's own pairing).
    qdrant_grpc_port: int | None = Field(default=None, validation_alias="QDRANT_GRPC_PORT")
    redis_url: str = Field(default=DEFAULT_REDIS_URL, validation_alias="REDIS_URL")
    postgres_url: str | None = Field(default=None, validation_alias="POSTGRES_URL")
    ollama_base_url: str | None = Field(default=None, validation_alias="OLLAMA_BASE_URL")
    ollama_model: str | None = Field(default=None, validation_alias="OLLAMA_MODEL")
    cuda_visible_devices: str | None = Field(default=None, validation_alias="CUDA_VISIBLE_DEVICES")

    home: Path = Field(default=Path(".omnilab"), validation_alias="OMNILAB_HOME")
    runs_dir: Path = Field(default=Path("runs"), validation_alias="OMNILAB_RUNS_DIR")
    data_dir: Path = Field(default=Path("data/experiments"), validation_alias="OMNILAB_DATA_DIR")
    state_dir: Path = Field(default_factory=_state_home, validation_alias="OMNILAB_STATE_DIR")
    tracking_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OMNILAB_TRACKING_URL"),
        description="Overrides POSTGRES_URL for the tracking store only.",
    )
    runtime: str = Field(
        default="auto",
        validation_alias="OMNILAB_RUNTIME",
        description="A runtime plug-in's name (local, docker...) or auto.",
    )

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        from omnilab import plugins

        choices = ["auto", *plugins.names("runtime")]
        if value not in choices:
            raise ValueError(f"unknown runtime {value!r}: choose one of {', '.join(choices)}")
        return value

    service_user: str = Field(
        default="nobody",
        validation_alias="OMNILAB_SERVICE_USER",
        description="Unprivileged user that runs PostgreSQL when omnilab itself runs as root.",
    )
    ready_timeout: float = Field(default=60.0, validation_alias="OMNILAB_READY_TIMEOUT")
    retention_days: float = Field(
        default=14.0,
        ge=0,
        validation_alias="OMNILAB_RETENTION_DAYS",
        description="Days a promotable run's stack data is kept waiting for promotion; "
        "0 keeps it until the run is promoted or discarded.",
    )
    promote_lock_timeout: float = Field(
        default=10.0,
        gt=0,
        validation_alias="OMNILAB_PROMOTE_LOCK_TIMEOUT",
        description="Seconds a promotion's switch waits for production locks before giving up.",
    )

    @property
    def production_postgres_url(self) -> str:
        return self.postgres_url or DEFAULT_POSTGRES_URL

    @property
    def production_ollama_url(self) -> str:
        return self.ollama_base_url or DEFAULT_OLLAMA_URL

    @property
    def tracking_dsn(self) -> str | None:
        """The tracking store's URL, or None for the embedded default."""
        return self.tracking_url or self.postgres_url


def get_settings(env_file: Path | None = None) -> Settings:
    """Read the settings now (from ``env_file`` instead of ``./.env.system`` if given).

    Not cached: a notebook or a test that changes the environment between runs must see
    the change, and reading a few variables costs far less than starting a stack.
    """
    from pydantic import ValidationError

    from omnilab.errors import UsageError

    try:
        if env_file is not None:
            return Settings(_env_file=env_file)  # type: ignore[call-arg]
        return Settings()
    except ValidationError as exc:
        # One line naming the variable, not pydantic's report (a usage error: exit 2).
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UsageError(f"{where}: {message}") from None
