"""The classes researchers subclass: :class:`Experiment` and its :class:`Params`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

# Re-exported: experiments declare ``gpu: GpuPolicy`` beside the rest of their class.
from omnilab.gpu import GpuPolicy

# Re-exported: ``requires`` may be given as a Requirements as well as a dict.
from omnilab.requirements import Requirements, requirements_of

# Re-exported: experiments declare ``resources = Resources(...)`` beside their services.
from omnilab.resources import Resources

if TYPE_CHECKING:
    from omnilab.context import RunContext
    from omnilab.services.base import Service

Isolation = Literal["host", "container"]

__all__ = [
    "Experiment",
    "GpuPolicy",
    "Isolation",
    "Params",
    "Requirements",
    "Resources",
    "is_experiment_class",
]


class Params(BaseModel):
    """An experiment's parameters: a pydantic model, so every value is validated and typed.

    Unknown names are refused (``extra="forbid"``): a misspelt ``-p n_dcos=5`` must fail
    loudly instead of silently running with the default.

    Numbers must be finite (``allow_inf_nan=False``): ``-p seconds=nan`` or ``1e400`` is
    a typo far more often than a wish. A model that means to take them says so, for all
    its floats (``model_config = ConfigDict(allow_inf_nan=True)``) or for one
    (``x: float = Field(1.0, allow_inf_nan=True)``); they are then recorded as the
    strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (JSON has no such numbers),
    which the model reads back as the same floats.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        frozen=False,
        allow_inf_nan=False,
        ser_json_inf_nan="strings",
    )


class Experiment:
    """Base class of every experiment.

    Subclasses declare what they need as class attributes and implement :meth:`run`::

        class Hello(Experiment):
            services = [Redis(), Postgres(), Qdrant()]

            class Params(Params):
                n: int = 10

            def run(self, ctx):
                ctx.log_metric("n", ctx.params.n)
                return {"ok": True}
    """

    #: Services this experiment's private stack must provide.
    services: ClassVar[list[Service]] = []
    #: "auto" uses GPUs when the runtime can give them, True requires them, False never.
    gpu: ClassVar[GpuPolicy] = "auto"
    #: What ``omnilab promote`` may copy into production after a run.
    promotes: ClassVar[list[Any]] = []
    #: What the run starts with: items copied from production into its stack before
    #: ``run`` (the same classes as ``promotes``, with ``limit=``, ``sample=``...), each
    #: verified and recorded with the run. A method ``seeds(self, params)`` may return
    #: the list instead, shaped by the run's parameters. ``omnilab run --no-seed`` skips it.
    seeds: ClassVar[list[Any]] = []
    #: The parameters model; subclasses override it with their own ``class Params(Params)``.
    Params: ClassVar[type[Params]] = Params
    #: Name used in the tracking store; the class name unless set.
    name: ClassVar[str | None] = None
    #: Where ``run`` executes: "host" (omnilab's own process) or "container" (the
    #: experiments image, on the run's network; needs the docker runtime).
    isolation: ClassVar[Isolation] = "host"
    #: What each container of the run may use (memory, CPUs, processes, disk), with
    #: ``per_service`` overrides; None: the defaults (:data:`omnilab.resources.DEFAULTS`).
    #: The docker runtime enforces them; the local runtime enforces none and says so.
    resources: ClassVar[Resources | None] = None
    #: What the worker that takes a queued run must offer (docs/scaling.md, Placement):
    #: ``{"gpu": 1, "gpu_memory_gb": 40, "gpu_model": "H100", "runtime": "docker",
    #: "labels": {"zone": "a"}, "host": "b"}``, any of these keys. ``gpu = True`` adds a
    #: GPU and ``isolation = "container"`` the docker runtime. Checked when the class is
    #: defined: an unknown key or a bad value is an error naming it.
    requires: ClassVar[Mapping[str, Any] | Requirements | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A typo in `requires` must fail where it was written, not leave a run waiting
        # for a worker that can never exist.
        if any(name in cls.__dict__ for name in ("requires", "gpu", "isolation")):
            cls.requirements()

    def run(self, ctx: RunContext) -> dict[str, Any] | None:
        """Do the work; the returned mapping becomes the run's summary."""
        raise NotImplementedError(f"{type(self).__name__} must implement run(self, ctx)")

    def accept(self, summary: dict[str, Any]) -> bool:
        """Whether a succeeded run is good enough to promote with ``--promote``."""
        return True

    # -- introspection used by the CLI, the API and the tracking store -----------------

    @classmethod
    def experiment_name(cls) -> str:
        return cls.name or cls.__name__

    @classmethod
    def description(cls) -> str:
        doc = cls.__dict__.get("__doc__")
        return inspect.cleandoc(doc) if doc else ""

    @classmethod
    def service_names(cls) -> list[str]:
        return [s.name for s in cls.services]

    @classmethod
    def requirements(cls) -> Requirements | None:
        """What a worker must offer to run it from the queue; None: any worker."""
        return requirements_of(cls.requires, cls.gpu, cls.isolation, f"{cls.__name__}.")


def is_experiment_class(obj: object) -> bool:
    return inspect.isclass(obj) and issubclass(obj, Experiment) and obj is not Experiment
