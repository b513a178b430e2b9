"""The run context handed to ``Experiment.run(ctx)``."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from omnilab.tracking.records import ArtifactRecord

if TYPE_CHECKING:
    import ollama
    import psycopg
    import qdrant_client
    import redis

    from omnilab.experiment import Params
    from omnilab.gpu import Gpu
    from omnilab.stack import Stack
    from omnilab.tracking.metrics import MetricBuffer


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class RunContext:
    """Everything an experiment touches: its params, its stack's clients, its records.

    ``ctx.qdrant``, ``ctx.redis``, ``ctx.postgres`` and ``ctx.ollama`` are the official
    clients, connected to this run's own stack and created on first use. They go through
    ``stack.client(name)`` alone: inside a container the stack is the network's
    (:class:`omnilab.isolation.inside.NetworkStack`), which has nothing else of a ``Stack``.
    """

    def __init__(
        self,
        *,
        run_id: str,
        params: Params,
        stack: Stack,
        run_dir: Path,
        metrics: MetricBuffer,
        logger: logging.Logger,
    ) -> None:
        self.run_id = run_id
        self.params = params
        self.stack = stack
        self.run_dir = run_dir
        self.artifacts_dir = run_dir / "artifacts"
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log = logger
        self._metrics = metrics

    # -- clients ----------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        """``ctx.<service>`` for every service of the run's stack, plug-ins' included (the
        properties below only type omnilab's own)."""
        stack = self.__dict__.get("stack")
        if stack is not None and not name.startswith("_") and name in stack.services:
            return stack.client(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def qdrant(self) -> qdrant_client.QdrantClient:
        """``qdrant_client.QdrantClient`` for this run's Qdrant."""
        return cast("qdrant_client.QdrantClient", self.stack.client("qdrant"))

    @property
    def redis(self) -> redis.Redis:
        """``redis.Redis`` for this run's Redis (responses decoded to str)."""
        return cast("redis.Redis", self.stack.client("redis"))

    @property
    def postgres(self) -> psycopg.Connection:
        """``psycopg.Connection`` (autocommit) to this run's PostgreSQL database."""
        return cast("psycopg.Connection", self.stack.client("postgres"))

    @property
    def ollama(self) -> ollama.Client:
        """``ollama.Client`` for this run's Ollama."""
        return cast("ollama.Client", self.stack.client("ollama"))

    @property
    def gpus(self) -> list[Gpu]:
        return list(self.stack.gpus)

    @property
    def env(self) -> dict[str, str]:
        """``QDRANT_URL``, ``REDIS_URL``... pointing at this run's stack, for subprocesses."""
        return self.stack.env

    # -- records ----------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record one value of metric ``key``; ``step`` defaults to the key's next step.

        Buffered: the call returns at once and a background thread writes in batches.
        """
        self._metrics.log(key, value, step)

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        for key, value in values.items():
            self._metrics.log(key, value, step)

    def log_artifact(self, path: str | Path, name: str | None = None) -> Path:
        """Keep a file with the run: copied under ``ctx.artifacts_dir`` unless already there.

        Files written straight into ``ctx.artifacts_dir`` are recorded at the end of the
        run without this call.
        """
        source = Path(path).resolve()
        if not source.is_file():
            raise FileNotFoundError(f"log_artifact: {path} is not a file")
        artifacts = self.artifacts_dir.resolve()
        if source.is_relative_to(artifacts):
            return source
        target = artifacts / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return target


def scan_artifacts(artifacts_dir: Path) -> list[ArtifactRecord]:
    """Every file under ``artifacts_dir``, with size and checksum, paths relative to it."""
    if not artifacts_dir.exists():
        return []
    return [
        ArtifactRecord(
            path=str(p.relative_to(artifacts_dir)), size=p.stat().st_size, sha256=file_digest(p)
        )
        for p in sorted(artifacts_dir.rglob("*"))
        if p.is_file()
    ]
