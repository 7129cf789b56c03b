"""The product as `make run` leaves it: events posted through the ingest API are in Pinot within seconds
(the always-on streaming job); an hourly run triggered through Airflow's REST API for a chosen logical date,
as the scheduler would start it, rebuilds the past hour, registers the Delta tables and moves the seam; Trino's
seam view then equals an independent recount of what was posted, each minute from exactly one layer.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from lakepulse.platform.components.lake import expected_relations
from lakepulse.platform.components.trino import connect
from lakepulse.settings import Settings
from tests.e2e.conftest import NEEDS
from tests.e2e.served import HOURLY_RUN_WAIT_S, Served

# The shared hourly run (the `served` fixture) is set up inside the first test that asks for it.
pytestmark = [pytest.mark.integration, pytest.mark.needs(*NEEDS),
              pytest.mark.timeout(HOURLY_RUN_WAIT_S + 900)]


def seam_view_totals(settings: Settings, tenant: str) -> dict[tuple[str, str], tuple[int, float]]:
    """(layer, metric) → (count, sum) of the tenant's rows in Trino's seam view; values bound, never spliced."""
    conn = connect(settings, 120)
    try:
        cur = conn.cursor()
        cur.execute('SELECT layer, metric, sum("count"), sum("sum") FROM delta.lakepulse.metrics_minute_all '
                    "WHERE tenant_id = ? AND metric IN ('orders_placed', 'gross_sales') GROUP BY layer, metric",
                    [tenant])
        return {(r[0], r[1]): (int(r[2]), float(r[3] or 0.0)) for r in cur.fetchall()}
    finally:
        conn.close()


def test_posted_events_reach_pinot_and_trino_through_a_scheduled_style_hourly_run(
        settings: Settings, served: Served) -> None:
    tenant, past, current = served.tenant, served.past, served.current
    assert served.answer["accepted"] == len(past) + len(current) + len(served.resent), served.answer
    assert served.answer["rejected"] == len(served.malformed), served.answer
    # Independent recount of what was accepted: one per event id.
    unique = {e["event_id"]: e for e in [*past, *current]}
    recount_n, recount_sum = len(unique), sum(e["properties"]["amount"] for e in unique.values())

    # The run took the chosen logical date, as the scheduler's run at that tick: it rebuilt
    # [hour_end - 1h - lookback, hour_end).
    assert served.run_state == "success"
    assert served.run_logical_date == served.tick

    # 4. The seam moved past the hour (a later scheduled run may have moved it further), the tables are there.
    seam = served.seam
    assert seam is not None and seam >= served.hour_end
    conn = connect(settings, 60)
    try:
        cur = conn.cursor()
        cur.execute("SHOW TABLES FROM delta.lakepulse")
        assert expected_relations() <= {r[0] for r in cur.fetchall()}
    finally:
        conn.close()

    # 5. Trino's seam view equals the recount, each minute from the layer the seam assigns it to.
    before = [e for e in unique.values() if datetime.fromisoformat(e["occurred_at"]) < seam]
    after = [e for e in unique.values() if datetime.fromisoformat(e["occurred_at"]) >= seam]
    totals = seam_view_totals(settings, tenant)
    served_n = sum(n for (_, metric), (n, _) in totals.items() if metric == "orders_placed")
    served_sum = sum(s for (_, metric), (_, s) in totals.items() if metric == "gross_sales")
    assert served_n == recount_n and served_sum == pytest.approx(recount_sum)
    assert totals.get(("batch", "orders_placed"), (0, 0.0))[0] == len(before)
    assert totals.get(("speed", "orders_placed"), (0, 0.0))[0] == len(after)
    assert totals.get(("batch", "gross_sales"), (0, 0.0))[1] == pytest.approx(
        sum(e["properties"]["amount"] for e in before))
