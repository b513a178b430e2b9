"""What a queued run needs of the worker that takes it, and what a worker offers.

``Experiment.requires`` (a dict, checked here with pydantic) plus what the experiment's
other attributes imply (``gpu = True`` needs a GPU, ``isolation = "container"`` needs
the docker runtime) make a run's :class:`Requirements`. A worker registers an
:class:`Offer` (its host, the runtimes that work there, its GPUs, its labels); the queue
places a run only on a host whose workers offer everything it requires
(:mod:`omnilab.queue.placement`), and a worker's run process checks its own slot's offer
again before running it.

Everything here is pure: no store, no Redis, so the API, the reconciler, the worker and
a class definition all judge a run the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from omnilab.errors import UsageError

#: A label's key and value: one word each, as a shell or a URL carries them untouched.
LABEL_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$"
LABEL_VALUE = r"^[A-Za-z0-9_.:/+@\-]{1,64}$"
LABEL_RULE = (
    "write key=value (key: up to 63 letters, digits, '_', '.', '-', '/', starting with a "
    "letter or digit; value: up to 64 letters, digits or _ . : / + @ -)"
)
#: The keys ``Experiment.requires`` may hold, in the order messages name them.
KEYS = ("gpu", "gpu_memory_gb", "gpu_model", "runtime", "labels", "host")
#: Bytes in a GB as GPU makers count them (an "80 GB" card has 81,559 MiB).
GB = 10**9


def parse_label(text: str, where: str) -> tuple[str, str]:
    """``key=value`` as a pair; a one-line :class:`UsageError` naming ``where`` else."""
    key, sep, value = text.strip().partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not re.fullmatch(LABEL_KEY, key) or not re.fullmatch(LABEL_VALUE, value):
        raise UsageError(f"{where} {text!r}: {LABEL_RULE}")
    return key, value


def parse_labels(items: list[str] | str, where: str) -> dict[str, str]:
    """Labels from repeated ``key=value`` items, or one comma-separated string; a key
    given twice keeps its last value (a command line's ``--label`` overrides the
    setting's)."""
    if isinstance(items, str):
        items = [part for part in items.split(",") if part.strip()]
    return dict(parse_label(item, where) for item in items)


class GpuOffer(BaseModel):
    """One GPU a worker hands out: its id as given to the worker (an index or a UUID),
    and what ``nvidia-smi`` says of it (None where it says nothing: no driver here)."""

    id: str
    model: str | None = None
    memory_mib: int | None = None

    @property
    def memory_gb(self) -> float | None:
        return self.memory_mib * 2**20 / GB if self.memory_mib is not None else None

    def describe(self) -> str:
        memory = f", {self.memory_gb:.0f} GB" if self.memory_gb is not None else ""
        return f"{self.id}: {self.model or 'unknown model'}{memory}"


class Offer(BaseModel):
    """What a worker (or one of its slots) can give a run."""

    host: str
    runtimes: list[str] = Field(default_factory=list)
    gpus: list[GpuOffer] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)


class Requirements(BaseModel):
    """``Experiment.requires``: what a worker must offer to take the run.

    - ``gpu``: GPUs the run gets (0 or 1: a worker slot hands out one GPU);
    - ``gpu_memory_gb``: the GPU's memory, at least, in GB as on the card's box;
    - ``gpu_model``: part of the GPU's model name, any case (``"H100"``, ``"A100"``);
    - ``runtime``: a runtime plug-in's name that must work on the worker (``docker``);
    - ``labels``: labels the worker must carry (``omnilab worker --label zone=a``);
    - ``host``: the worker's host name (``OMNILAB_HOST`` or the system's).

    A GPU model or memory implies ``gpu: 1``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: int | None = Field(default=None, ge=0)
    gpu_memory_gb: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    gpu_model: str | None = Field(default=None, min_length=1, max_length=100)
    runtime: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    host: str | None = Field(default=None, min_length=1, max_length=253)

    @field_validator("gpu")
    @classmethod
    def _one_gpu(cls, value: int | None) -> int | None:
        if value is not None and value > 1:
            raise ValueError(
                f"{value} GPUs: a run gets one GPU (each worker slot hands out one); "
                "ask for 1, or 0 for none"
            )
        return value

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str | None) -> str | None:
        from omnilab import plugins

        if value is None:
            return None
        names = plugins.names("runtime")
        if value not in names:
            raise ValueError(f"unknown runtime {value!r}: choose one of {', '.join(names)}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not re.fullmatch(LABEL_KEY, key) or not re.fullmatch(LABEL_VALUE, str(text)):
                raise ValueError(f"label {key}={text}: {LABEL_RULE}")
        return value

    @model_validator(mode="after")
    def _gpu_named(self) -> Requirements:
        if self.gpu == 0 and (self.gpu_model or self.gpu_memory_gb):
            raise ValueError("gpu: 0, but a GPU model or memory is asked for")
        return self

    @property
    def gpus(self) -> int:
        """GPUs needed: what ``gpu`` says, else 1 when a GPU model or memory is named."""
        if self.gpu is not None:
            return self.gpu
        return 1 if self.gpu_model or self.gpu_memory_gb else 0

    def as_json(self) -> dict[str, Any]:
        """What the run's record keeps: only the keys given."""
        return self.model_dump(exclude_defaults=True)

    def describe(self) -> str:
        """``a GPU (model H100, 40 GB), the docker runtime, label zone=a``."""
        return ", ".join(needs(self).values()) or "nothing"


def needs(required: Requirements) -> dict[str, str]:
    """Each thing ``required`` asks for, in words, by the key that asks it."""
    said: dict[str, str] = {}
    if required.host:
        said["host"] = f"host {required.host}"
    if required.runtime:
        said["runtime"] = f"the {required.runtime} runtime"
    if required.gpus:
        said["gpu"] = "a GPU"
    if required.gpu_model:
        said["gpu_model"] = f"a GPU of model {required.gpu_model}"
    if required.gpu_memory_gb:
        said["gpu_memory_gb"] = f"a GPU with {required.gpu_memory_gb:g} GB"
    for key, value in required.labels.items():
        said[f"labels.{key}"] = f"label {key}={value}"
    return said


def unmet(required: Requirements, offer: Offer) -> list[str]:
    """The keys of :func:`needs` that ``offer`` does not give; empty: it gives them all.

    GPU model and memory must hold for every GPU offered: a worker's GPU runs may land
    on any of its GPU slots."""
    missing = []
    if required.host and required.host != offer.host:
        missing.append("host")
    if required.runtime and required.runtime not in offer.runtimes:
        missing.append("runtime")
    if required.gpus and not offer.gpus:
        missing.append("gpu")
    if required.gpu_model:
        wanted = required.gpu_model.lower()
        if not offer.gpus or not all(wanted in (g.model or "").lower() for g in offer.gpus):
            missing.append("gpu_model")
    if required.gpu_memory_gb:
        floor = required.gpu_memory_gb
        if not offer.gpus or not all((g.memory_gb or 0) >= floor for g in offer.gpus):
            missing.append("gpu_memory_gb")
    for key, value in required.labels.items():
        if offer.labels.get(key) != value:
            missing.append(f"labels.{key}")
    return missing


def requirements_of(
    requires: Requirements | Mapping[str, Any] | None,
    gpu: object,
    isolation: object,
    where: str = "",
) -> Requirements | None:
    """A run's requirements: ``requires`` with what ``gpu = True`` and ``isolation =
    "container"`` imply; None when it needs nothing in particular (the shared queue).
    A one-line :class:`UsageError` starting with ``where`` for a bad or contradictory
    ``requires``."""
    if requires is None:
        given = Requirements()
    elif isinstance(requires, Requirements):
        given = requires
    elif isinstance(requires, Mapping):
        try:
            given = Requirements.model_validate(dict(requires))
        except ValidationError as exc:
            raise UsageError(f"{where}requires: {_first_problem(exc)}") from None
    else:
        raise UsageError(
            f"{where}requires must be a dict such as {{'gpu': 1, 'labels': {{'zone': 'a'}}}}, "
            f"not {type(requires).__name__}"
        )
    update: dict[str, Any] = {}
    if gpu is True:
        if given.gpu == 0:
            raise UsageError(f"{where}gpu = True, but requires says gpu: 0")
        update["gpu"] = 1
    elif gpu is False and given.gpus:
        raise UsageError(f"{where}gpu = False, but requires asks for a GPU")
    if isolation == "container":
        if given.runtime not in (None, "docker"):
            raise UsageError(
                f"{where}isolation = 'container' runs in the docker runtime, but requires "
                f"says runtime: {given.runtime}"
            )
        update["runtime"] = "docker"
    required = given.model_copy(update=update) if update else given
    return required if needs(required) else None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key {loc!r} (known: {', '.join(KEYS)})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message
