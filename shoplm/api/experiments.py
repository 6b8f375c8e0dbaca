"""Experiment routes (admin key): create, list, change, stop, promote, and each one's results.

    POST /v1/admin/experiments {"name": "fusion", "arms": [{"name": "control", "share": 0.5},
                                 {"name": "bm25", "share": 0.5, "settings": {"hybrid_dense_weight": 0.2}}]}
    GET  /v1/admin/experiments/1/results   # per arm: visitors, click rate, conversion, tests, SRM
    GET  /v1/admin/experiments/1/results?since=1748736000&until=1749340800   # the lists shown in [since, until)
    POST /v1/admin/experiments/1/stop      # every visitor back to the service as configured
    POST /v1/admin/experiments/1/promote   {"arm": "bm25"}: every visitor gets that arm

Arms, assignment and statistics: shoplm/data/experiments.py and shoplm/engine/experiments.py.
A body is checked whole before anything is written; a bad one is a 422 naming the field.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from shoplm.api.deps import AdminAccess, EngineDep
from shoplm.api.routes import ERRORS, When
from shoplm.data.experiments import Experiment, ExperimentError
from shoplm.errors import NotFound

router = APIRouter(prefix="/v1/admin/experiments", dependencies=[AdminAccess], responses=ERRORS, tags=["experiments"])
Id = Annotated[int, Path(ge=1, le=2**53)]


class ArmBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    share: float = Field(gt=0, le=1, description="The share of visitors; the arms' shares sum to 1.")
    settings: dict[str, Any] = Field(default_factory=dict, description="hybrid_dense_weight, hybrid_method, "
                                     "search_rerank: what this arm changes; {} = the control.")
    search_model: str | None = Field(None, min_length=1, max_length=1_000, pattern=r"^[^\x00-\x1f\x7f]+$",
                                     description="A model directory inside "
                                     "SHOPLM_MODELS_DIR (`shoplm train search --out`) this arm searches with.")
    recommend_model: str | None = Field(None, min_length=1, max_length=1_000, pattern=r"^[^\x00-\x1f\x7f]+$",
                                        description="A model directory "
                                        "inside SHOPLM_MODELS_DIR (`shoplm train recommend --out`) this arm "
                                        "recommends with.")


class ExperimentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    arms: list[ArmBody] = Field(min_length=2, max_length=20)
    salt: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$", description=(
        "What visitors are hashed with (default: random). The same salt and arms give every visitor "
        "the same arm again: a re-created experiment, or a seeded simulation. Kept by PUT."))


class Promote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arm: str = Field(min_length=1, max_length=100)


def _parsed(raw: dict[str, Any], id: int | None = None, salt: str | None = None) -> Experiment:
    try:
        return Experiment.parse({**raw, **({"salt": salt} if salt else {})}, id)
    except ExperimentError as error:
        raise _invalid(error) from None


def _stored(engine, experiment: Experiment) -> Experiment:
    try:
        return engine.put_experiment(experiment)
    except ExperimentError as error:
        raise _invalid(error) from None


def _invalid(error: ExperimentError) -> RequestValidationError:
    """A 422 whose loc is the bad field's path: arms[1].share -> ["body", "arms", 1, "share"]."""
    parts = error.field.replace("[", ".").replace("]", "").split(".")
    loc = ("body", *(int(p) if p.isascii() and p.isdigit() else p for p in parts))  # "¹".isdigit() too
    return RequestValidationError([{"loc": loc, "msg": str(error), "type": "value_error"}])


def _find(engine, experiment_id: int) -> Experiment:
    found = next((e for e in engine.store.experiments() if e.id == experiment_id), None)
    if found is None:
        raise NotFound(f"no experiment with id {experiment_id}; list them with GET /v1/admin/experiments")
    return found


@router.get("")
def list_experiments(engine: EngineDep) -> list[dict[str, Any]]:
    return [e.to_dict() for e in engine.store.experiments()]


@router.post("")
def create_experiment(body: ExperimentBody, engine: EngineDep) -> dict[str, Any]:
    """Start an experiment (at most one runs at a time): visitors are assigned to arms by
    hashing their user or session id with the experiment's own salt."""
    return _stored(engine, _parsed(body.model_dump(exclude_none=True))).to_dict()


@router.get("/{experiment_id}")
def get_experiment(experiment_id: Id, engine: EngineDep) -> dict[str, Any]:
    return _find(engine, experiment_id).to_dict()


@router.put("/{experiment_id}")
def put_experiment(experiment_id: Id, body: ExperimentBody, engine: EngineDep) -> dict[str, Any]:
    """Change the arms (the salt, so every visitor's arm, is kept while the arms keep their shares)."""
    old = _find(engine, experiment_id)
    return _stored(engine, _parsed({**body.model_dump(exclude_none=True), "status": old.status}, experiment_id,
                                   old.salt)).to_dict()


@router.delete("/{experiment_id}", status_code=204)
def delete_experiment(experiment_id: Id, engine: EngineDep) -> Response:
    if not engine.store.delete_experiment(experiment_id):
        raise NotFound(f"no experiment with id {experiment_id}")
    engine._experiments = None
    return Response(status_code=204)


@router.post("/{experiment_id}/stop")
def stop_experiment(experiment_id: Id, engine: EngineDep) -> dict[str, Any]:
    return _stored(engine, replace(_find(engine, experiment_id), status="stopped")).to_dict()


@router.post("/{experiment_id}/promote")
def promote_arm(experiment_id: Id, body: Promote, engine: EngineDep) -> dict[str, Any]:
    """Every visitor gets this arm from now on (until the experiment is stopped or deleted)."""
    experiment = _find(engine, experiment_id)
    if body.arm not in {a.name for a in experiment.arms}:
        raise RequestValidationError([{"loc": ("body", "arm"), "type": "value_error",
                                       "msg": f"no arm {body.arm!r}; arms: {', '.join(a.name for a in experiment.arms)}"}])
    return _stored(engine, replace(experiment, status="promoted", winner=body.arm)).to_dict()


@router.get("/{experiment_id}/results")
def experiment_results(experiment_id: Id, engine: EngineDep, since: When = None, until: When = None) -> dict[str, Any]:
    """Per arm: visitors, the share who clicked and who bought, CTR, revenue per visitor, each
    tested against the first arm (two-sided two-proportion z-test), and the sample-ratio check;
    over the lists shown in [since, until) (Unix seconds; default: everything stored), as
    GET /v1/admin/analytics counts them."""
    if since is not None and until is not None and until <= since:
        raise RequestValidationError([{"loc": ("query", "until"), "type": "value_error",
                                       "msg": f"until ({until:g}) must be after since ({since:g})"}])
    experiment = _find(engine, experiment_id)
    return engine.experiment_results(experiment, since, until) | {"since": since, "until": until}
