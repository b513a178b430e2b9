"""Calling an experiment's ``run(ctx)``: the same on the host (:mod:`omnilab.runner`) and
inside its container (:mod:`omnilab.isolation.inside`), so a summary, a failure and the
run's logger read alike wherever it ran. Below both, so neither imports the other."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import traceback
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from omnilab.context import RunContext
    from omnilab.experiment import Experiment

_PACKAGE_DIR = Path(__file__).resolve().parent


def _jsonable(value: Any) -> Any:
    """Summaries go to jsonb: numpy scalars, paths, NaN and friends made JSON-safe."""
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        with contextlib.suppress(Exception):
            return _jsonable(item())
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def normalize_summary(result: Any) -> dict[str, Any]:
    """What ``run()`` returned, as the run's summary: a JSON object."""
    if result is None:
        return {}
    value = _jsonable(result)
    return value if isinstance(value, dict) else {"result": value}


def user_traceback(exc: BaseException) -> str:
    """The traceback from the experiment's own code down: omnilab's frames are noise."""
    tb = exc.__traceback__
    while tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(
        _PACKAGE_DIR
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def experiment_logger(run_id: str, stream: SupportsWrite[str]) -> logging.Logger:
    """``ctx.log``: the run's own logger, writing to ``stream`` only (the run's log), never
    to the root logger an embedding program may have configured."""
    logger = logging.getLogger(f"omnilab.run.{run_id[:8]}")
    logger.handlers.clear()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def invoke(cls: type[Experiment], ctx: RunContext) -> tuple[str, dict[str, Any] | None, str | None]:
    """Call the experiment's ``run``: (status, summary, error), the same wherever it runs
    (here, or inside its container). An exception's traceback is printed on stderr."""
    try:
        return "succeeded", normalize_summary(cls().run(ctx)), None
    except SystemExit as exc:
        # sys.exit() inside run(): 0 ends the run early and well, else it failed.
        if exc.code in (0, None):
            return "succeeded", {}, None
        return "failed", None, f"the experiment called sys.exit({exc.code!r})"
    except Exception as exc:
        error = user_traceback(exc)
        print(error, file=sys.stderr, end="")
        return "failed", None, error
