"""lakepulse_hourly's range: the hour that just ended plus lookback_hours, the same scheduled as triggered manually."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import pendulum
import pytest

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "lakepulse_hourly.py"
RANGE_TASKS = ("bronze", "gold", "quality", "reconcile")
# The tick under test (a scheduled run fires at it; a manual trigger names it as logical_date).
TICK = pendulum.datetime(2026, 12, 1, 10, tz="UTC")
EXPECTED = {  # lookback_hours → the --start/--end the run at TICK must pass (what spark_jobs' parse_time reads)
    0: ("2026-12-01T09:00:00+00:00", "2026-12-01T10:00:00+00:00"),
    2: ("2026-12-01T07:00:00+00:00", "2026-12-01T10:00:00+00:00"),
}


@pytest.fixture(scope="module")
def dag(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The DAG as the DAG processor parses it (an isolated AIRFLOW_HOME, as in test_dagbag)."""
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags["lakepulse_hourly"]


@pytest.fixture(scope="module")
def serialized(dag: Any) -> Any:
    """The DAG as the scheduler and the API server see it: serialized, with the core timetable."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def _freeze(monkeypatch: pytest.MonkeyPatch, timetable: Any, now: pendulum.DateTime) -> None:
    """Pin the wall clock the timetable reads (catchup=False schedules relative to now)."""
    monkeypatch.setattr(sys.modules[type(timetable).__module__], "utcnow", lambda: now)


def _scheduled_interval(monkeypatch: pytest.MonkeyPatch, serialized: Any) -> Any:
    """The DagRunInfo the scheduler creates at TICK, after the run it created one tick earlier."""
    timetable = serialized.timetable
    _freeze(monkeypatch, timetable, TICK.subtract(hours=1).add(seconds=30))
    previous = serialized.next_dagrun_info(last_automated_run_info=None)
    _freeze(monkeypatch, timetable, TICK.add(seconds=30))
    info = serialized.next_dagrun_info(last_automated_run_info=previous)
    assert previous.run_after == TICK.subtract(hours=1)
    assert info.run_after == TICK
    return info


def _render(dag: Any, template: str, interval: Any, lookback: int) -> str:
    """Render one of the DAG's range templates as a task of a run with this data interval would."""
    from airflow.sdk.execution_time import macros

    params = copy.deepcopy(dag.params)
    params["lookback_hours"] = lookback
    context = {
        "data_interval_start": interval.start,
        "data_interval_end": interval.end,
        "params": params.validate(),
        "macros": macros,
    }
    return str(dag.get_template_env(force_sandboxed=True).from_string(template).render(**context))


def _bronze_range(dag: Any, interval: Any, lookback: int) -> tuple[str, str]:
    """The --start/--end bronze's spark-submit gets for a run with this data interval."""
    args = list(dag.get_task("bronze").application_args)
    start, end = args[args.index("--start") + 1], args[args.index("--end") + 1]
    return _render(dag, start, interval, lookback), _render(dag, end, interval, lookback)


def test_range_tasks_and_seam_share_the_templates(dag: Any) -> None:
    """Every range task and the seam step get the same --start/--end templates as bronze."""
    args = list(dag.get_task("bronze").application_args)
    start, end = args[args.index("--start") + 1], args[args.index("--end") + 1]
    assert "{{" in start and "{{" in end
    for task_id in RANGE_TASKS:
        assert list(dag.get_task(task_id).application_args)[:4] == ["--start", start, "--end", end], task_id
    assert dag.get_task("advance_seam").op_kwargs == {"start": start, "end": end}


def test_schedule_keeps_catchup_off_and_one_run(serialized: Any) -> None:
    """The timetable change keeps the DAG's run policy."""
    assert serialized.catchup is False
    assert serialized.max_active_runs == 1


@pytest.mark.parametrize("lookback", sorted(EXPECTED))
def test_scheduled_run_rebuilds_the_hour_that_ended(monkeypatch: pytest.MonkeyPatch, dag: Any, serialized: Any,
                                                    lookback: int) -> None:
    """The run the scheduler fires at TICK has logical date TICK and rebuilds [TICK - 1h - lookback, TICK)."""
    info = _scheduled_interval(monkeypatch, serialized)
    assert info.logical_date == TICK
    assert _bronze_range(dag, info.data_interval, lookback) == EXPECTED[lookback]


@pytest.mark.parametrize("lookback", sorted(EXPECTED))
def test_manual_trigger_at_a_logical_date_matches_the_schedule(monkeypatch: pytest.MonkeyPatch, dag: Any,
                                                               serialized: Any, lookback: int) -> None:
    """POST dagRuns with logical_date=TICK is the scheduled run of TICK: same logical date, interval and range."""
    # The API server's path (TriggerDAGRunPostBody.validate_context): the interval comes from the timetable.
    manual = serialized.timetable.infer_manual_data_interval(run_after=TICK)
    scheduled = _scheduled_interval(monkeypatch, serialized)
    # Same logical date too, else the manual run would take the one a later scheduled run needs (and it is skipped).
    assert scheduled.logical_date == TICK
    assert manual == scheduled.data_interval
    assert _bronze_range(dag, manual, lookback) == EXPECTED[lookback]


def test_consecutive_scheduled_runs_tile_time(monkeypatch: pytest.MonkeyPatch, dag: Any, serialized: Any) -> None:
    """With lookback 0 the next scheduled run starts where this one ended: the seam never meets a gap."""
    info = _scheduled_interval(monkeypatch, serialized)
    _freeze(monkeypatch, serialized.timetable, TICK.add(hours=1, seconds=30))
    following = serialized.next_dagrun_info(last_automated_run_info=info)
    assert _bronze_range(dag, following.data_interval, 0) == (TICK.isoformat(), TICK.add(hours=1).isoformat())
