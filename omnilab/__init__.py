"""omnilab: isolated experiment stacks beside a production AI stack.

The public API::

    import omnilab
    from omnilab import Experiment, Params, Qdrant, Redis, Postgres, Ollama

    run = omnilab.run(MyExperiment, params={"n": 10})     # -> Run
    with omnilab.stack(Redis(), Postgres()) as s:         # -> Stack
        s.redis.ping()
    omnilab.runs(experiment="MyExperiment")               # -> RunTable (past runs)
    omnilab.compare([run1, run2])                         # -> Comparison
    run.promote(dry_run=True)                             # -> PromotionResult (omnilab.promote)
    run.artifact("plot.png")                              # -> bytes, from wherever it is kept
"""

from omnilab.artifacts import ArtifactError, ArtifactNotFound, ChecksumMismatch
from omnilab.config import Settings, get_settings
from omnilab.context import RunContext
from omnilab.errors import (
    ExperimentLoadError,
    OmnilabError,
    ParamsError,
    RunNotFound,
    ServiceUnavailable,
    StackStartError,
    TrackingStoreError,
    UsageError,
)
from omnilab.experiment import Experiment, Params, Requirements
from omnilab.notebook import Comparison, RunTable, compare, runs
from omnilab.recorded import Run, RunFailed
from omnilab.resources import Resources
from omnilab.runner import run
from omnilab.services.base import Service
from omnilab.services.ollama import Ollama
from omnilab.services.postgres import Postgres
from omnilab.services.promotable import PromotionConflict, PromotionError, PromotionFailed
from omnilab.services.qdrant import Qdrant
from omnilab.services.redis import Redis
from omnilab.stack import Stack, stack
from omnilab.version import __version__
from omnilab.workloads.aer import Aer, AerResult
from omnilab.workloads.aer_resources import AerMemoryError, AerUnavailable
from omnilab.workloads.codegen import CodeGen, CodegenReport, CodingTask
from omnilab.workloads.completions import ModelUnavailable
from omnilab.workloads.prompts import TemplateError
from omnilab.workloads.sandbox import Limits as SandboxLimits

__all__ = [
    "Aer",
    "AerMemoryError",
    "AerResult",
    "AerUnavailable",
    "ArtifactError",
    "ArtifactNotFound",
    "ChecksumMismatch",
    "CodeGen",
    "CodegenReport",
    "CodingTask",
    "Comparison",
    "Experiment",
    "ExperimentLoadError",
    "ModelUnavailable",
    "Ollama",
    "OmnilabError",
    "Params",
    "ParamsError",
    "Postgres",
    "PromotionConflict",
    "PromotionError",
    "PromotionFailed",
    "Qdrant",
    "Redis",
    "Requirements",
    "Resources",
    "Run",
    "RunContext",
    "RunFailed",
    "RunNotFound",
    "RunTable",
    "SandboxLimits",
    "Service",
    "ServiceUnavailable",
    "Settings",
    "Stack",
    "StackStartError",
    "TemplateError",
    "TrackingStoreError",
    "UsageError",
    "__version__",
    "compare",
    "get_settings",
    "run",
    "runs",
    "stack",
]
