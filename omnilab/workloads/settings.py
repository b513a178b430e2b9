"""Settings of the workloads, read like omnilab's own (environment, ``.env.system``, then
the project's config file).

Kept apart from :mod:`omnilab.config` because only runs that use a workload need them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from omnilab.config import ProjectSettings


def _codegen_image() -> str:
    from omnilab.runtimes.docker.images.recipes import CODEGEN

    return CODEGEN.tag


class WorkloadSettings(ProjectSettings):
    generated_dir: Path = Field(
        default=Path("generated-code"),
        validation_alias="OMNILAB_GENERATED_DIR",
        description="Where generated files go, one folder per run.",
    )
    templates_dir: Path | None = Field(
        default=None,
        validation_alias="OMNILAB_TEMPLATES_DIR",
        description="A folder of the user's own prompt templates (they win over shipped ones).",
    )
    completion_cache_from: str | None = Field(
        default=None,
        validation_alias="OMNILAB_COMPLETION_CACHE_FROM",
        description="Redis URL (or 'production') read for cached completions the run lacks.",
    )
    sandbox_image: str = Field(
        default_factory=lambda: _codegen_image(),
        validation_alias="OMNILAB_IMAGE_SANDBOX",
        description="Image the docker sandbox runs generated code in (needs python3); "
        "default: the codegen image `omnilab images build codegen` makes.",
    )
    sandbox_user: str = Field(
        default="nobody",
        validation_alias="OMNILAB_SANDBOX_USER",
        description="Unprivileged user the local sandbox runs code as when omnilab is root.",
    )
    aer_use_gpu: str | None = Field(
        default=None,
        validation_alias="QISKIT_AER_USE_GPU",
        description="The production team's switch: 1 requires the GPU for Aer, 0 the CPU.",
    )
    redis_url: str = Field(default="redis://localhost:6379/0", validation_alias="REDIS_URL")


def get_workload_settings() -> WorkloadSettings:
    return WorkloadSettings()
