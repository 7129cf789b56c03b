"""`/v1/alerts`: a tenant's alert rules (PostgreSQL) and the history of their firing and resolved events.

The alert service applies a created, changed or deleted rule without a restart. A webhook URL must reach a
public address (resolved here, and again at every delivery) unless the `alert_webhook_allow_private` setting
allows otherwise: a tenant must not make the server call internal services. Tenancy as for dashboards: the
tenant from the token, analysts read only, another tenant's rule id is 404.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from lakepulse.alerts.webhooks import check_webhook_url
from lakepulse.api.deps import SettingsDep
from lakepulse.api.responses import json_response
from lakepulse.api.routes.dashboards import READ_ERRORS, WRITE_ERRORS, ReadScope, WriteScope
from lakepulse.api.routes.series import TIME_RULE, parse_time
from lakepulse.config import crud
from lakepulse.config.errors import ConfigError
from lakepulse.config.schemas import (
    AlertHistory,
    AlertRuleIn,
    AlertRuleList,
    AlertRuleOut,
    AlertRulePatch,
    event_out,
    rule_fields,
    rule_out,
    validated,
)
from lakepulse.settings import Settings

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

RuleId = Annotated[uuid.UUID, Path(description="An alert rule id from GET /v1/alerts/rules")]
DEFAULT_HISTORY = 100


def checked_webhook(rule: AlertRuleIn, settings: Settings) -> AlertRuleIn:
    """The rule, once its webhook URL (if any) may be called: ConfigError (400) with the reason otherwise."""
    if rule.webhook_url is not None:
        try:
            check_webhook_url(rule.webhook_url, settings.alert_webhook_allow_private)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return rule


def _rule(rule: AlertRuleOut, status: int = 200) -> Response:
    return json_response(rule.model_dump(mode="json"), status)


@router.get("/rules", response_model=None, responses={200: {"model": AlertRuleList}, **READ_ERRORS})
def list_rules(scope: ReadScope) -> Response:
    """The tenant's alert rules, oldest first."""
    rules = crud.list_rules(scope.session, tenant=scope.tenant_id)
    return json_response(AlertRuleList(rules=[rule_out(r) for r in rules]).model_dump(mode="json"))


@router.post("/rules", status_code=201, response_model=None, responses={201: {"model": AlertRuleOut}, **WRITE_ERRORS})
def create_rule(body: AlertRuleIn, scope: WriteScope, settings: SettingsDep) -> Response:
    """A new rule: `metric` (count, sum, average or distribution) over `window_minutes`, compared by `condition`
    with `threshold` (or anomaly), on the minute rows matching `dimensions`; events go to the alerts topic and to
    `webhook_url` when set."""
    rule = crud.create_rule(scope.session, tenant=scope.tenant_id, rule=checked_webhook(body, settings))
    answer = rule_out(rule)
    scope.session.commit()
    return _rule(answer, 201)


@router.get("/rules/{rule_id}", response_model=None, responses={200: {"model": AlertRuleOut}, **READ_ERRORS})
def read_rule(rule_id: RuleId, scope: ReadScope) -> Response:
    return _rule(rule_out(crud.get_rule(scope.session, tenant=scope.tenant_id, rule_id=rule_id)))


@router.patch("/rules/{rule_id}", response_model=None, responses={200: {"model": AlertRuleOut}, **WRITE_ERRORS})
def change_rule(rule_id: RuleId, body: AlertRulePatch, scope: WriteScope, settings: SettingsDep) -> Response:
    """Change some fields of a rule (e.g. `{"enabled": false}`); the result is validated as a whole."""
    row = crud.get_rule(scope.session, tenant=scope.tenant_id, rule_id=rule_id)
    changed = validated(AlertRuleIn, {**rule_fields(row), **body.model_dump(exclude_unset=True)})
    if changed.webhook_url != row.webhook_url:  # a URL already accepted is checked again at every delivery
        checked_webhook(changed, settings)
    rule = crud.update_rule(scope.session, tenant=scope.tenant_id, rule_id=rule_id, rule=changed)
    answer = rule_out(rule)
    scope.session.commit()
    return _rule(answer)


@router.delete("/rules/{rule_id}", status_code=204, response_model=None, responses=WRITE_ERRORS)
def delete_rule(rule_id: RuleId, scope: WriteScope) -> Response:
    """Delete a rule; its events stay in the history (with no rule id)."""
    crud.delete_rule(scope.session, tenant=scope.tenant_id, rule_id=rule_id)
    scope.session.commit()
    return Response(status_code=204)


@router.get("/history", response_model=None, responses={200: {"model": AlertHistory}, **READ_ERRORS})
def alert_history(
    scope: ReadScope,
    rule_id: Annotated[uuid.UUID | None, Query(description="Only this rule's events")] = None,
    status: Annotated[Literal["firing", "resolved"] | None, Query(description="Only firing or resolved")] = None,
    before: Annotated[str | None, Query(description=f"Only events older than this, {TIME_RULE} (paging: the "
                                                    "previous answer's next_before)")] = None,
    limit: Annotated[int, Query(ge=1, le=crud.MAX_HISTORY, description="At most this many events")]
    = DEFAULT_HISTORY,
) -> Response:
    """The tenant's firing and resolved events, newest first, with their values and times."""
    events = crud.list_events(scope.session, tenant=scope.tenant_id, rule_id=rule_id, status=status,
                              before=parse_time("before", before) if before is not None else None, limit=limit)
    next_before = events[-1].occurred_at if len(events) == limit else None
    body = AlertHistory(events=[event_out(e) for e in events], next_before=next_before)
    return json_response(body.model_dump(mode="json"))
