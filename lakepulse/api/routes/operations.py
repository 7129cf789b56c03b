"""`/v1/ops`: the pipeline's operational state and backfills, for the analyst and admin roles.

Analysts and admins read everything here (the overview, backfill runs); only an admin starts a backfill, because a
backfill rewrites the served tables of its range and republishes Pinot's rows. A restaurant token gets 403.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from lakepulse.api.deps import CatalogDep, PrincipalDep
from lakepulse.api.operations import (
    MAX_BACKFILL_HOURS,
    RUN_ID_PATTERN,
    BackfillRangeError,
    Operations,
    backfill_plan,
)
from lakepulse.api.responses import error_response, json_response
from lakepulse.api.schemas import ErrorBody, error_responses
from lakepulse.auth.tokens import Forbidden, Principal
from lakepulse.batch_cli import BACKFILL_DAG

router = APIRouter(prefix="/v1/ops", tags=["operations"])

NO_RUN: Final = "No backfill run with this id"
READ_ERRORS: Final = error_responses(401, 403, 429, 503)


class BackfillIn(BaseModel):
    """A backfill to start: [from, to) in whole UTC hours, optionally only some metrics."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    start: AwareDatetime = Field(alias="from", description="Inclusive, a whole hour with a zone (RFC 3339)",
                                 examples=["2026-05-01T10:00:00Z"])
    end: AwareDatetime = Field(alias="to", description="Exclusive, a whole hour, at most the start of the current "
                               f"hour and at most {MAX_BACKFILL_HOURS} hours after `from`",
                               examples=["2026-05-01T11:00:00Z"])
    metrics: list[str] = Field(default_factory=list, max_length=64,
                               description="Metric names of the catalog; empty: every metric")
    reconcile: bool = Field(default=True, description="Repair the speed layer's rows of the range afterwards")


class BackfillStarted(BaseModel):
    """A started backfill run: follow it at `status_url`."""

    run_id: str
    dag_id: str
    state: str
    range: list[str]
    metrics: list[str]
    reconcile: bool
    status_url: str


class BackfillTask(BaseModel):
    task_id: str
    state: str
    try_number: int | None = None
    max_tries: int | None = None
    start: str | None = None
    end: str | None = None
    duration_s: float | None = None


class BackfillRun(BaseModel):
    """One backfill run: its state, its range and each task's state (`progress`: tasks done of all)."""

    run_id: str
    state: str
    finished: bool
    range: list[str | None] | None = None
    metrics: list[str] | None = None
    start: str | None = None
    end: str | None = None
    duration_s: float | None = None
    tasks: list[BackfillTask] = []
    progress: dict[str, int] = {}
    airflow_url: str | None = None


class BackfillRuns(BaseModel):
    runs: list[BackfillRun]


class Overview(BaseModel):
    """Each part is an object with `available` (false: `reason` says why, the other parts still answer)."""

    model_config = ConfigDict(extra="allow")

    as_of: str
    mode: str
    services: dict[str, Any]
    kafka_lags: dict[str, Any]
    freshness: dict[str, Any]
    archive: dict[str, Any]
    hourly: dict[str, Any]
    seam: dict[str, Any]
    late_events: dict[str, Any]
    dead_letters: dict[str, Any]
    reconcile: dict[str, Any]


def get_operations(request: Request) -> Operations:
    """Dependency: the app's operations reader."""
    ops: Operations = request.app.state.ops
    return ops


def operations_reader(principal: PrincipalDep) -> Principal:
    """Dependency: the caller, if an analyst or admin (Forbidden otherwise)."""
    if not principal.reads_all_tenants:
        raise Forbidden("the operations API is for the analyst and admin roles")
    return principal


def operations_admin(principal: PrincipalDep) -> Principal:
    """Dependency: the caller, if an admin (Forbidden otherwise: analysts follow backfills, admins start them)."""
    if principal.role != "admin":
        raise Forbidden("starting a backfill needs the admin role (analysts may read runs)")
    return principal


OperationsDep = Annotated[Operations, Depends(get_operations)]
ReaderDep = Annotated[Principal, Depends(operations_reader)]
AdminDep = Annotated[Principal, Depends(operations_admin)]
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="A run id from POST or GET /v1/ops/backfills")]


@router.get("/overview", response_model=None, responses={200: {"model": Overview}, **READ_ERRORS})
def overview(_: ReaderDep, ops: OperationsDep) -> Response:
    """Services, Kafka lags, speed-layer freshness, archive lag, the last hourly runs, the seam, late events per
    tenant and producer, dead-letter reasons and the latest reconcile comparison; each part read with its own
    deadline."""
    return json_response(ops.overview(datetime.now(UTC)))


@router.get("/backfills", response_model=None, responses={200: {"model": BackfillRuns}, **READ_ERRORS})
def list_backfills(_: ReaderDep, ops: OperationsDep) -> Response:
    """The newest backfill runs, newest first."""
    return json_response({"runs": ops.backfills(datetime.now(UTC))})


@router.post("/backfills", status_code=202, response_model=None,
             responses={202: {"model": BackfillStarted}, **error_responses(400, 401, 403, 429, 503)})
def start_backfill(body: BackfillIn, principal: AdminDep, ops: OperationsDep, catalog: CatalogDep) -> Response:
    """Start the backfill DAG for [from, to) (admin only): the run id, and where to follow it."""
    try:
        plan = backfill_plan(body.start, body.end, body.metrics, body.reconcile, datetime.now(UTC), catalog.names())
    except BackfillRangeError as exc:
        return error_response(400, str(exc))
    run_id = ops.start_backfill(plan, principal.subject)
    conf = plan.conf()
    return json_response({"run_id": run_id, "dag_id": BACKFILL_DAG, "state": "queued",
                          "range": [conf["start"], conf["end"]], "metrics": conf["metrics"],
                          "reconcile": plan.reconcile, "status_url": f"/v1/ops/backfills/{quote(run_id, safe='')}"},
                         202)


@router.get("/backfills/{run_id}", response_model=None,
            responses={200: {"model": BackfillRun}, 404: {"model": ErrorBody, "description": NO_RUN},
                       **error_responses(400, 401, 403, 429, 503)})
def read_backfill(run_id: RunId, _: ReaderDep, ops: OperationsDep) -> Response:
    """One backfill run: its state and each task's state, until it succeeds or fails."""
    run = ops.backfill(run_id, datetime.now(UTC))
    if run is None:
        return error_response(404, NO_RUN)
    return json_response(run)
