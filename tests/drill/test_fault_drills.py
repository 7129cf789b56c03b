"""Fault drills (issue 21, design.md §4 invariants 1-4 and the "faults" target of §7): `kill -9` of each component
under a steady SDK load loses nothing and counts nothing twice, end to end.

All checks read one `drilled` run (tests/drill/drills.py): one window per component, each with a tenant of its own,
so a loss or a double count is attributed to the kill in whose window its event was sent.
"""

import pytest

from tests.drill.drills import DrillRun

# The whole drill (eight kills, the hourly run, the archive and a backfill) runs in the first test's setup.
pytestmark = [pytest.mark.drill, pytest.mark.integration, pytest.mark.timeout(4 * 3600)]


def test_every_component_comes_back_after_kill_9(drilled: DrillRun) -> None:
    assert [w.component for w in drilled.windows if w.ready_s is None or w.error] == []
    assert drilled.healthy_after, drilled.unhealthy


def test_the_load_was_acknowledged_in_every_window(drilled: DrillRun) -> None:
    assert all(w.figures["acknowledged"] > 0 for w in drilled.windows), [w.figures for w in drilled.windows]
    # Nothing given up, refused or left unqueued: the recount is the whole load.
    assert (drilled.sdk["failed"], drilled.sdk["rejected"], drilled.sdk["not_queued"]) == (0, 0, 0), drilled.sdk
    assert drilled.sdk["accepted"] >= sum(w.figures["acknowledged"] for w in drilled.windows)


def test_the_archive_holds_every_acknowledged_event_once(drilled: DrillRun) -> None:
    figures = {w.component: (w.figures["archived_unique"], w.figures["archive_missing"],
                             w.figures["archive_unacknowledged"]) for w in drilled.windows}
    assert figures == {w.component: (w.figures["acknowledged"], 0, 0) for w in drilled.windows}


def test_the_hourly_run_killed_mid_task_succeeds(drilled: DrillRun) -> None:
    if not any(w.component == "airflow-scheduler" for w in drilled.windows):
        pytest.skip("the scheduler drill was not selected (LAKEPULSE_DRILLS)")
    assert drilled.hourly["killed_during"], drilled.hourly
    assert drilled.hourly["state"] == "success", drilled.hourly


def test_trino_serves_the_recount_after_a_backfill(drilled: DrillRun) -> None:
    assert drilled.backfill["state"] == "success", drilled.backfill
    served = {w.component: (w.figures["seam_view"][0], pytest.approx(w.figures["seam_view"][1]))
              for w in drilled.windows}
    assert served == {w.component: (w.figures["acknowledged"], w.figures["gross_sales"]) for w in drilled.windows}


def test_pinot_equals_the_recount_after_reconcile(drilled: DrillRun) -> None:
    pinot = {w.component: (w.figures["pinot_after_reconcile"][0], pytest.approx(w.figures["pinot_after_reconcile"][1]))
             for w in drilled.windows}
    assert pinot == {w.component: (w.figures["acknowledged"], w.figures["gross_sales"]) for w in drilled.windows}
    assert [(w.component, w.figures["lost"], w.figures["doubled"]) for w in drilled.windows] == [
        (w.component, 0, 0) for w in drilled.windows]
