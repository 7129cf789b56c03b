"""An order six hours late — posted now through the ingest API, beyond the hourly run's lookback and the speed layer's
watermark — is in Trino after one hourly run with no manual step: the run's late-data loop (plan_late → late_hours →
record_late_cursor) found its hour in the archive and rebuilt exactly that hour.

Shares the e2e suite's one hourly run (tests/e2e/served.py), triggered for a free tick as the scheduler would run it.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.platform.components.airflow import HOURLY_DAG, airflow_password
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.trino import connect
from lakepulse.settings import Settings
from tests.e2e.conftest import NEEDS
from tests.e2e.served import HOURLY_RUN_WAIT_S, PINOT_WAIT_S, Served, pinot_orders
from tests.e2e.test_product_runs_itself import seam_view_totals
from tests.stack_events import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.needs(*NEEDS),
              pytest.mark.timeout(HOURLY_RUN_WAIT_S + 900)]


def test_an_event_six_hours_late_reaches_trino_within_one_scheduled_cycle(settings: Settings, ctx: Context,
                                                                          served: Served) -> None:
    late = served.late
    assert late is not None and served.late_answer is not None
    assert served.late_answer["accepted"] == 1, served.late_answer
    assert served.run_state == "success"
    tenant, at = late["tenant_id"], datetime.fromisoformat(late["occurred_at"])
    hour = at.replace(minute=0, second=0, microsecond=0)

    # An hourly run started after the post (the one the suite triggered, or a scheduled one that came first) found
    # its hour in plan_late, and that run's own range did not hold the order: only the late-data loop rebuilt it.
    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(ctx))
    assert served.late_posted_at is not None
    after = [r["dag_run_id"] for r in api.runs(HOURLY_DAG, limit=20) if r["state"] == "success" and r.get("start_date")
             and datetime.fromisoformat(r["start_date"]) >= served.late_posted_at]
    assert served.hourly_run_id in after
    looped = [run for run in after if hour.isoformat() in api.xcom(HOURLY_DAG, run, "plan_late")["hours"]]
    assert looped, f"no hourly run since the post named {hour} a late hour: {after}"
    for run in looped:
        planned = api.xcom(HOURLY_DAG, run, "plan_range")
        assert not datetime.fromisoformat(planned["start"]) <= at < datetime.fromisoformat(planned["end"]), planned

    # Trino: the order's minute is behind the seam and served from Delta, once; bronze holds the event once.
    assert served.seam is not None and at < served.seam
    amount = late["properties"]["amount"]
    assert seam_view_totals(settings, tenant) == {("batch", "orders_placed"): (1, 0.0),
                                                  ("batch", "gross_sales"): (1, amount)}
    conn = connect(settings, 60)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM delta.lakepulse.events WHERE tenant_id = ? AND event_id = ?",
                    [tenant, late["event_id"]])
        assert cur.fetchall() == [[1]]
    finally:
        conn.close()
    # The loop reconciled the rebuilt hour too: Pinot, which dropped the order as too late, now has it.
    wait_for(lambda: pinot_orders(settings, tenant), (1, amount), PINOT_WAIT_S, "the late order in Pinot", 1)
