"""Alert history: every firing and resolve the service publishes, written to the configuration database's
`alert_events` (lakepulse.config.crud.record_event), where GET /v1/alerts/history reads it.

An event is written once whatever happens: its id is the row's idempotency key, so writing it again (a crash
before the evaluator's state was saved re-sends the same ids) changes nothing. Events the database does not take
now (it is down) are kept, in memory and in a file beside the evaluator's state, and written on a later call.
An event the database refuses for good (its tenant was deleted meanwhile) is dropped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from lakepulse.alerts.rules import AlertEvent
from lakepulse.config import crud
from lakepulse.config.db import ConfigDatabase

log = logging.getLogger("lakepulse.alerts")

MAX_PENDING: Final = 100_000  # events held while the database is down; the oldest are dropped beyond


def event_fields(event: AlertEvent) -> dict[str, Any]:
    """`crud.record_event`'s arguments for one event: the rule as it fired (name, metric, condition, threshold
    are copied, so a resolve of a deleted rule is kept too), the breach id as breach key, the event id as
    idempotency key."""
    return {
        "tenant": event.tenant_id, "rule_id": uuid.UUID(event.rule_id), "status": event.status,
        "value": event.value, "window_end": datetime.fromtimestamp(event.window_end_ms / 1000, UTC),
        "breach_key": event.breach_id, "idempotency_key": event.id, "rule_name": event.rule_name,
        "metric": event.metric, "condition": event.condition,
        "threshold": None if event.condition == "anomaly" else event.threshold,
        "details": {"reason": event.reason, "window_minutes": event.window_minutes,
                    "dimensions": dict(event.dimensions), "anomaly": event.anomaly,
                    "baseline_mean": event.baseline_mean, "baseline_std": event.baseline_std},
    }


class DatabaseHistory:
    """Writes published events to `alert_events`; what the database did not take is retried on the next call."""

    def __init__(self, db: ConfigDatabase, pending_path: Path | None = None) -> None:
        self.db = db
        self.pending_path = pending_path
        self.pending: list[AlertEvent] = []
        if pending_path is not None and pending_path.exists():
            self.pending = [AlertEvent(**e) for e in json.loads(pending_path.read_text())]
            log.info("%d alert events from before the restart still to write to the history", len(self.pending))

    def record(self, events: Iterable[AlertEvent] = ()) -> bool:
        """Write `events` and any held back; True when nothing is left to write."""
        self.pending.extend(events)
        if not self.pending:
            return True
        try:
            with self.db.session() as session:
                for event in self.pending:
                    self._write(session, event)
                session.commit()
        except SQLAlchemyError as exc:  # the database is down or timed out: keep them for the next call
            del self.pending[:-MAX_PENDING]
            log.warning("alert history not written (%s); %d events kept to write later", type(exc).__name__,
                        len(self.pending))
            self._save()
            return False
        self.pending = []
        self._save()
        return True

    def _write(self, session: Session, event: AlertEvent) -> None:
        try:
            with session.begin_nested():  # a savepoint: one refused event does not undo the others
                crud.record_event(session, **event_fields(event))
        # Refused for good, so not retried: its tenant is gone (IntegrityError), a value does not fit (DataError),
        # or it is no stored rule's (a rule id that is no UUID, a tenant that is no tenant id: ValueError).
        except (IntegrityError, DataError, ValueError) as exc:
            log.warning("alert event %s not kept in the history: %s", event.id, type(exc).__name__)

    def _save(self) -> None:
        if self.pending_path is None:
            return
        if not self.pending:
            self.pending_path.unlink(missing_ok=True)
            return
        self.pending_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.pending_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(e) for e in self.pending]))
        os.replace(tmp, self.pending_path)
