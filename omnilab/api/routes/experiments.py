"""``/v1/experiments``: what may be queued, with each experiment's params schema."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from omnilab.api.auth import require
from omnilab.api.models import EXPERIMENT_NAME, ExperimentDetail, ExperimentList, ExperimentOut
from omnilab.api.responses import errors
from omnilab.catalog import Catalog, UnknownExperiment

router = APIRouter(prefix="/v1", tags=["experiments"], dependencies=[Depends(require("read"))])


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.omnilab.catalog
    catalog.refresh()
    return catalog


@router.get("/experiments", response_model=ExperimentList, responses=errors(401, 403))
def list_experiments(request: Request) -> ExperimentList:
    """Experiments of the server's experiments folder: the only ones that can be queued."""
    catalog = _catalog(request)
    return ExperimentList(
        experiments=[ExperimentOut(**e.describe()) for e in catalog],
        problems=catalog.problems,
    )


@router.get("/experiments/{name}", response_model=ExperimentDetail, responses=errors(401, 403, 404))
def get_experiment(
    request: Request, name: str = Path(pattern=EXPERIMENT_NAME, max_length=200)
) -> ExperimentDetail:
    """One experiment, with the JSON Schema of its params (from its pydantic model)."""
    try:
        entry = _catalog(request).get(name)
    except UnknownExperiment as exc:
        raise HTTPException(404, str(exc)) from None
    return ExperimentDetail(**entry.describe(), params_schema=entry.cls.Params.model_json_schema())
