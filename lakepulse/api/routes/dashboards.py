"""`/v1/dashboards`: a tenant's dashboards and their widgets (PostgreSQL), and one call that reads every widget.

The tenant comes from the token (analyst and admin tokens name one with `tenant`); analyst tokens read
configuration but do not change it. Another tenant's dashboard or widget id answers 404, as an unknown one does.
A tenant's first use of the configuration API gives it the default restaurant dashboard.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from lakepulse.api.dashboard_data import DashboardData, Readers, resolve_dashboard
from lakepulse.api.deps import (
    BatchSourceDep,
    CatalogDep,
    ConfigDbDep,
    DbSessionDep,
    PrincipalDep,
    SeamSourceDep,
    SpeedSourceDep,
)
from lakepulse.api.responses import json_response
from lakepulse.api.routes.live import LiveSourceDep
from lakepulse.api.schemas import ErrorBody, error_responses
from lakepulse.api.widgets import DashboardBody, WidgetBody, default_widgets
from lakepulse.auth.tokens import Forbidden, Principal
from lakepulse.config import crud
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.defaults import DEFAULT_DASHBOARD_NAME
from lakepulse.config.schemas import (
    DashboardList,
    DashboardOut,
    DashboardRename,
    WidgetList,
    WidgetOut,
    dashboard_out,
    dashboard_summary,
    widget_out,
)
from lakepulse.events import TENANT_ID_PATTERN

router = APIRouter(prefix="/v1/dashboards", tags=["dashboards"])

MAX_KNOWN_TENANTS: Final = 100_000  # per process; forgotten all at once beyond (the next use looks again)
NOT_FOUND: Final = "No such object for this tenant (another tenant's ids are not found either)"
READ_ERRORS: Final = {**error_responses(400, 401, 403, 429, 503), 404: {"model": ErrorBody, "description": NOT_FOUND}}
WRITE_ERRORS: Final = {**READ_ERRORS, 409: {"model": ErrorBody, "description": "A per-tenant limit is reached"}}

TenantQuery = Annotated[str | None, Query(description="Analyst/admin tokens: the tenant (required). Tenant tokens "
                                          "use their own; naming another is 403.",
                                          json_schema_extra={"pattern": TENANT_ID_PATTERN})]
DashboardId = Annotated[uuid.UUID, Path(description="A dashboard id from GET /v1/dashboards")]
WidgetId = Annotated[uuid.UUID, Path(description="A widget id of that dashboard")]


@dataclass(frozen=True)
class TenantConfig:
    """One request's access to configuration: its session and the tenant it is scoped to."""

    session: Session
    tenant_id: str


def _scope(principal: Principal, db: ConfigDatabase, session: Session, tenant: str | None, write: bool
           ) -> TenantConfig:
    tenant_id = principal.tenant_for(tenant)  # authorise before anything else
    if write and not (principal.role == "admin" or principal.tenant_id == tenant_id):
        raise Forbidden("this token may read configuration but not change it (an admin or the tenant's own "
                        "token may)")
    if tenant_id not in db.known_tenants:
        crud.ensure_tenant(session, tenant=tenant_id, default_name=DEFAULT_DASHBOARD_NAME,
                           default_widgets=default_widgets())
        session.commit()
        if len(db.known_tenants) >= MAX_KNOWN_TENANTS:
            db.known_tenants.clear()
        db.known_tenants.add(tenant_id)
    return TenantConfig(session, tenant_id)


def config_reader(principal: PrincipalDep, db: ConfigDbDep, session: DbSessionDep, tenant: TenantQuery = None
                  ) -> TenantConfig:
    """Dependency: the tenant's configuration, to read (every role that reads metrics)."""
    return _scope(principal, db, session, tenant, write=False)


def config_writer(principal: PrincipalDep, db: ConfigDbDep, session: DbSessionDep, tenant: TenantQuery = None
                  ) -> TenantConfig:
    """Dependency: the tenant's configuration, to change (its own tenant token, or an admin naming it)."""
    return _scope(principal, db, session, tenant, write=True)


ReadScope = Annotated[TenantConfig, Depends(config_reader)]
WriteScope = Annotated[TenantConfig, Depends(config_writer)]


def _ok(body: BaseModel, status: int = 200) -> Response:
    return json_response(body.model_dump(mode="json"), status)


def _doc(model: type[BaseModel], errors: dict[int | str, dict[str, Any]], status: int = 200
         ) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": "OK" if status == 200 else "Created"}, **errors}


@router.get("", response_model=None, responses=_doc(DashboardList, READ_ERRORS))
def list_dashboards(scope: ReadScope) -> Response:
    """The tenant's dashboards, oldest first (the default restaurant dashboard is made on first use)."""
    rows = crud.list_dashboards(scope.session, tenant=scope.tenant_id)
    return _ok(DashboardList(dashboards=[dashboard_summary(d) for d in rows]))


@router.post("", status_code=201, response_model=None, responses=_doc(DashboardOut, WRITE_ERRORS, 201))
def create_dashboard(body: DashboardBody, scope: WriteScope) -> Response:
    """A new dashboard, optionally with widgets (each validated against the metric catalog)."""
    dashboard = crud.create_dashboard(scope.session, tenant=scope.tenant_id, dashboard=body)
    answer = dashboard_out(dashboard)
    scope.session.commit()
    return _ok(answer, 201)


@router.get("/{dashboard_id}", response_model=None, responses=_doc(DashboardOut, READ_ERRORS))
def read_dashboard(dashboard_id: DashboardId, scope: ReadScope) -> Response:
    """One dashboard with its widgets in their order."""
    return _ok(dashboard_out(crud.get_dashboard(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id)))


@router.patch("/{dashboard_id}", response_model=None, responses=_doc(DashboardOut, WRITE_ERRORS))
def rename_dashboard(dashboard_id: DashboardId, body: DashboardRename, scope: WriteScope) -> Response:
    """Rename a dashboard."""
    dashboard = crud.rename_dashboard(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id,
                                      name=body.name)
    answer = dashboard_out(dashboard)
    scope.session.commit()
    return _ok(answer)


@router.delete("/{dashboard_id}", status_code=204, response_model=None, responses=WRITE_ERRORS)
def delete_dashboard(dashboard_id: DashboardId, scope: WriteScope) -> Response:
    """Delete a dashboard and its widgets."""
    crud.delete_dashboard(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id)
    scope.session.commit()
    return Response(status_code=204)


@router.get("/{dashboard_id}/data", response_model=None, responses=_doc(DashboardData, READ_ERRORS))
def dashboard_data(dashboard_id: DashboardId, scope: ReadScope, request: Request, seam: SeamSourceDep,
                   batch: BatchSourceDep, speed: SpeedSourceDep, live: LiveSourceDep, catalog: CatalogDep
                   ) -> Response:
    """Every widget of a dashboard read at once: a series widget as GET /v1/metrics/{metric}/series answers it
    over its window up to now, a top widget as GET /v1/metrics/{metric}/top, a live widget as its part of GET
    /v1/live. A widget that cannot be read carries `error` ({status, detail}); the others are still answered."""
    dashboard = crud.get_dashboard(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id)
    scope.session.commit()  # nothing to write: the connection goes back to the pool before the engines are read
    readers = Readers(seam=seam, batch=batch, speed=speed, live=live, catalog=catalog)
    answers = request.app.state.answers
    return _ok(resolve_dashboard(dashboard, scope.tenant_id, readers, datetime.now(UTC), answers.get))


# --- widgets ------------------------------------------------------------------------------------------------------


@router.get("/{dashboard_id}/widgets", response_model=None, responses=_doc(WidgetList, READ_ERRORS))
def list_widgets(dashboard_id: DashboardId, scope: ReadScope) -> Response:
    """A dashboard's widgets in their order."""
    rows = crud.list_widgets(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id)
    return _ok(WidgetList(widgets=[widget_out(w) for w in rows]))


@router.post("/{dashboard_id}/widgets", status_code=201, response_model=None,
             responses=_doc(WidgetOut, WRITE_ERRORS, 201))
def add_widget(dashboard_id: DashboardId, body: WidgetBody, scope: WriteScope) -> Response:
    """A new widget, last on the dashboard unless `position` says otherwise."""
    widget = crud.add_widget(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id, widget=body)
    answer = widget_out(widget)
    scope.session.commit()
    return _ok(answer, 201)


@router.get("/{dashboard_id}/widgets/{widget_id}", response_model=None, responses=_doc(WidgetOut, READ_ERRORS))
def read_widget(dashboard_id: DashboardId, widget_id: WidgetId, scope: ReadScope) -> Response:
    widget = crud.get_widget(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id, widget_id=widget_id)
    return _ok(widget_out(widget))


@router.put("/{dashboard_id}/widgets/{widget_id}", response_model=None, responses=_doc(WidgetOut, WRITE_ERRORS))
def replace_widget(dashboard_id: DashboardId, widget_id: WidgetId, body: WidgetBody, scope: WriteScope) -> Response:
    """Replace a widget (all its fields: which ones apply depends on its kind, so a partial change could leave
    fields of another kind behind)."""
    widget = crud.replace_widget(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id,
                                 widget_id=widget_id, widget=body)
    answer = widget_out(widget)
    scope.session.commit()
    return _ok(answer)


@router.delete("/{dashboard_id}/widgets/{widget_id}", status_code=204, response_model=None,
               responses=WRITE_ERRORS)
def delete_widget(dashboard_id: DashboardId, widget_id: WidgetId, scope: WriteScope) -> Response:
    crud.delete_widget(scope.session, tenant=scope.tenant_id, dashboard_id=dashboard_id, widget_id=widget_id)
    scope.session.commit()
    return Response(status_code=204)
