"""lakepulse_hourly's range: the hour that just ended plus lookback_hours (widened back to a lagging seam), the same
scheduled as triggered manually, and the same for every range task and the seam step (plan_range's XCom); bronze and
the quality gate read the same archive snapshot (plan_range's offsets)."""

from __future__ import annotations

import copy
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pendulum
import pytest

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "lakepulse_hourly.py"
RANGE_TASKS = ("bronze", "gold", "quality", "reconcile")
# The tick under test, five past the hour (a scheduled run fires at it; a manual trigger names it as logical_date),
# and the hour boundary its run rebuilds up to.
TICK = pendulum.datetime(2026, 12, 1, 10, 5, tz="UTC")
HOUR = pendulum.datetime(2026, 12, 1, 10, tz="UTC")
EXPECTED = {  # lookback_hours → the --start/--end the run at TICK must pass (what spark_jobs' parse_time reads)
    0: ("2026-12-01T09:00:00+00:00", "2026-12-01T10:00:00+00:00"),
    2: ("2026-12-01T07:00:00+00:00", "2026-12-01T10:00:00+00:00"),
}
# Seams that leave the normal range as is: before the first advance, and after the previous tick's run advanced it
# to the top of its hour.
STEADY_SEAMS = {"no seam": None, "previous tick": pendulum.datetime(2026, 12, 1, 9, tz="UTC")}
# The raw-archive connector's committed offsets plan_range reads (partition 2 has committed nothing yet).
OFFSETS = {"events.raw:0": 1234, "events.raw:1": 987, "events.raw:2": 0}
ARCHIVE_TASKS = ("bronze", "quality")  # the tasks that read the raw archive (gold and reconcile read Delta)


class _TaskInstance:
    """The `ti` a task's templates see: xcom_pull returns what plan_range returned in this run."""

    def __init__(self, planned: dict[str, Any]) -> None:
        self.planned = planned

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        """Only plan_range's return value exists in this run."""
        assert (task_ids, key) == ("plan_range", "return_value")
        return self.planned


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


def _render(dag: Any, template: str, interval: Any, lookback: int, planned: dict[str, Any] | None = None) -> str:
    """Render one of the DAG's templates as a task of a run with this data interval (and plan_range XCom) would."""
    from airflow.sdk.execution_time import macros

    params = copy.deepcopy(dag.params)
    params["lookback_hours"] = lookback
    context = {
        "data_interval_start": interval.start,
        "data_interval_end": interval.end,
        "params": params.validate(),
        "macros": macros,
        "ti": _TaskInstance(planned or {}),
    }
    return str(dag.get_template_env(force_sandboxed=True).from_string(template).render(**context))


def _plan(dag: Any, interval: Any, lookback: int, seam: datetime | None) -> dict[str, Any]:
    """What plan_range returns in a run with this data interval when the stored seam is `seam` (and OFFSETS)."""
    from lakepulse.batch.airflow import planned_range

    # plan_range's own templates, rendered, into the real callable's pure part (plan_range minus the seam and
    # offsets reads).
    kwargs = {k: _render(dag, v, interval, lookback) for k, v in dag.get_task("plan_range").op_kwargs.items()}
    return {**planned_range(seam=seam, **kwargs), "offsets": OFFSETS}


def _task_range(dag: Any, task_id: str, interval: Any, lookback: int, seam: datetime | None) -> tuple[str, str]:
    """The --start/--end a range task (or advance_seam) gets in a run with this data interval and seam."""
    task = dag.get_task(task_id)
    if task_id == "advance_seam":
        start, end = task.op_kwargs["start"], task.op_kwargs["end"]
    else:
        args = list(task.application_args)
        start, end = args[args.index("--start") + 1], args[args.index("--end") + 1]
    planned = _plan(dag, interval, lookback, seam)
    return _render(dag, start, interval, lookback, planned), _render(dag, end, interval, lookback, planned)


def _bronze_range(dag: Any, interval: Any, lookback: int, seam: datetime | None = None) -> tuple[str, str]:
    """The --start/--end bronze's spark-submit gets for a run with this data interval and seam."""
    return _task_range(dag, "bronze", interval, lookback, seam)


def test_range_tasks_and_seam_share_the_templates(dag: Any) -> None:
    """Every range task and the seam step get the same --start/--end templates as bronze: plan_range's XCom."""
    args = list(dag.get_task("bronze").application_args)
    start, end = args[args.index("--start") + 1], args[args.index("--end") + 1]
    assert "xcom_pull(task_ids='plan_range')" in start and "xcom_pull(task_ids='plan_range')" in end
    for task_id in RANGE_TASKS:
        assert list(dag.get_task(task_id).application_args)[:4] == ["--start", start, "--end", end], task_id
    assert dag.get_task("advance_seam").op_kwargs == {"start": start, "end": end}
    assert dag.get_task("plan_range").downstream_task_ids == {"bronze"}


def test_max_catchup_hours_param(dag: Any) -> None:
    """The cap is an integer DAG param, default 48, at least 1, and plan_range gets it."""
    param = dag.params.get_param("max_catchup_hours")
    assert param.value == 48
    assert param.schema["type"] == "integer" and param.schema["minimum"] == 1
    assert "params.max_catchup_hours" in dag.get_task("plan_range").op_kwargs["max_catchup_hours"]


def test_schedule_keeps_catchup_off_and_one_run(serialized: Any) -> None:
    """The timetable change keeps the DAG's run policy."""
    assert serialized.catchup is False
    assert serialized.max_active_runs == 1


@pytest.mark.parametrize("seam", STEADY_SEAMS.values(), ids=STEADY_SEAMS.keys())
@pytest.mark.parametrize("lookback", sorted(EXPECTED))
def test_scheduled_run_rebuilds_the_hour_that_ended(monkeypatch: pytest.MonkeyPatch, dag: Any, serialized: Any,
                                                    lookback: int, seam: datetime | None) -> None:
    """The run the scheduler fires at TICK has logical date TICK and rebuilds [TICK - 1h - lookback, TICK)."""
    info = _scheduled_interval(monkeypatch, serialized)
    assert info.logical_date == TICK
    for task_id in (*RANGE_TASKS, "advance_seam"):
        assert _task_range(dag, task_id, info.data_interval, lookback, seam) == EXPECTED[lookback], task_id


def test_scheduled_run_catches_up_a_lagging_seam(monkeypatch: pytest.MonkeyPatch, dag: Any,
                                                 serialized: Any) -> None:
    """Seam 5 h behind the hour (the stack was down), lookback 2: all five tasks rebuild [seam, HOUR), no gap."""
    info = _scheduled_interval(monkeypatch, serialized)
    seam = HOUR.subtract(hours=5)
    for task_id in (*RANGE_TASKS, "advance_seam"):
        assert _task_range(dag, task_id, info.data_interval, 2, seam) == (seam.isoformat(), HOUR.isoformat())


def test_plan_range_fails_without_retries_beyond_the_cap(monkeypatch: pytest.MonkeyPatch, dag: Any,
                                                          serialized: Any) -> None:
    """A seam further back than max_catchup_hours: plan_range fails at once, naming the backfill to run first."""
    from airflow.sdk.exceptions import AirflowFailException

    import lakepulse.batch.seam
    from lakepulse.batch.airflow import plan_range

    info = _scheduled_interval(monkeypatch, serialized)
    seam = HOUR.subtract(hours=49)
    monkeypatch.setattr(lakepulse.batch.seam, "read_seam", lambda settings, uri: seam)
    kwargs = {k: _render(dag, v, info.data_interval, 2) for k, v in dag.get_task("plan_range").op_kwargs.items()}
    with pytest.raises(AirflowFailException, match="lakepulse backfill --start 2026-11-29T09:00:00Z "
                                                   "--end 2026-12-01T07:00:00Z"):
        plan_range(**kwargs)


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
    # This run moved the seam to HOUR; the next one plans from there.
    assert _bronze_range(dag, following.data_interval, 0, HOUR) == (HOUR.isoformat(), HOUR.add(hours=1).isoformat())


def _archived_before(dag: Any, task_id: str, interval: Any) -> str | None:
    """The --archived-before a task gets in a run with this data interval (None: it takes none)."""
    args = list(dag.get_task(task_id).application_args)
    if "--archived-before" not in args:
        return None
    return _render(dag, args[args.index("--archived-before") + 1], interval, 2, _plan(dag, interval, 2, None))


def test_bronze_and_quality_read_the_same_archive_snapshot(monkeypatch: pytest.MonkeyPatch, dag: Any,
                                                           serialized: Any) -> None:
    """Both archive readers get plan_range's offsets as the same --archived-before, which the jobs parse back."""
    from spark_jobs.common import parse_archived_before

    info = _scheduled_interval(monkeypatch, serialized)
    rendered = {task_id: _archived_before(dag, task_id, info.data_interval) for task_id in RANGE_TASKS}
    assert rendered["bronze"] is not None and rendered["bronze"] == rendered["quality"]
    assert json.loads(rendered["bronze"]) == OFFSETS
    assert parse_archived_before(rendered["bronze"]) == {("events.raw", 0): 1234, ("events.raw", 1): 987,
                                                         ("events.raw", 2): 0}
    assert rendered["gold"] is None and rendered["reconcile"] is None
    args = [list(dag.get_task(t).application_args) for t in ARCHIVE_TASKS]
    assert args[0] == args[1]


def test_plan_range_returns_the_range_and_the_archive_offsets(monkeypatch: pytest.MonkeyPatch, dag: Any,
                                                              serialized: Any) -> None:
    """plan_range's XCom: the planned range plus the raw-archive connector's committed offsets, JSON-safe."""
    import lakepulse.batch.seam
    import lakepulse.platform.components.connect_sink as connect_sink
    from lakepulse.batch.airflow import REPO, plan_range

    read: list[Any] = []

    def archived_offsets(repo: Any, settings: Any) -> dict[str, int]:
        read.append(repo)
        return dict(OFFSETS)

    info = _scheduled_interval(monkeypatch, serialized)
    monkeypatch.setattr(lakepulse.batch.seam, "read_seam", lambda settings, uri: None)
    monkeypatch.setattr(connect_sink, "archived_offsets", archived_offsets)
    kwargs = {k: _render(dag, v, info.data_interval, 2) for k, v in dag.get_task("plan_range").op_kwargs.items()}
    planned = plan_range(**kwargs)
    assert planned == {"start": EXPECTED[2][0], "end": EXPECTED[2][1], "offsets": OFFSETS}
    assert json.loads(json.dumps(planned)) == planned
    assert read == [REPO]  # the checked-in connector config names the group and topic


STAGE_TASKS = ("bronze", "gold", "quality", "publish")  # write, audit, publish: one stage per run


def _arg(dag: Any, task_id: str, name: str) -> str:
    """The template of one command-line argument of a spark-submit task."""
    args = list(dag.get_task(task_id).application_args)
    return str(args[args.index(name) + 1])


def test_a_run_stages_checks_and_publishes_one_stage(dag: Any) -> None:
    """bronze and gold write the run's stage, the gate checks it, publish MERGEs it: all name the run's id, over
    plan_range's range; publish reads the same archive snapshot (it rebuilds the stage if it went stale)."""
    from lakepulse.batch.airflow import STAGE_ID

    assert STAGE_ID == "{{ run_id }}"
    for task_id in STAGE_TASKS:
        assert _arg(dag, task_id, "--stage-id") == STAGE_ID, task_id
        assert _arg(dag, task_id, "--start") == _arg(dag, "bronze", "--start"), task_id
    for task_id in ("quality", "publish"):
        assert _arg(dag, task_id, "--archived-before") == _arg(dag, "bronze", "--archived-before"), task_id
    assert dag.get_task("publish").application.endswith("spark_jobs/publish.py")
    assert dag.get_task("publish").upstream_task_ids == {"quality"}
    assert dag.get_task("reconcile").upstream_task_ids == {"publish"}


def test_the_late_loop_runs_after_the_seam_with_the_runs_range_and_snapshot(dag: Any) -> None:
    """plan_late gets the range the run rebuilt and its snapshot; late_hours rebuilds plan_late's ranges from that
    snapshot; the cursor moves to the same snapshot, last."""
    plan_late, cursor = dag.get_task("plan_late"), dag.get_task("record_late_cursor")
    assert plan_late.upstream_task_ids == {"advance_seam"}
    assert plan_late.op_kwargs == {"start": _arg(dag, "bronze", "--start"), "end": _arg(dag, "bronze", "--end"),
                                   "offsets": _arg(dag, "bronze", "--archived-before")}
    assert "xcom_pull(task_ids='plan_late')['ranges']" in _arg(dag, "late_hours", "--ranges")
    assert _arg(dag, "late_hours", "--archived-before") == _arg(dag, "bronze", "--archived-before")
    assert _arg(dag, "late_hours", "--stage-id") == "{{ run_id }}"
    assert dag.get_task("late_hours").application.endswith("spark_jobs/late.py")
    assert cursor.upstream_task_ids == {"late_hours"} and not cursor.downstream_task_ids
    assert cursor.op_kwargs == {"offsets": _arg(dag, "bronze", "--archived-before"),
                                "carried": "{{ ti.xcom_pull(task_ids='plan_late')['carried'] | tojson }}"}


def test_plan_late_names_the_hours_behind_the_seam_archived_since_the_cursor(monkeypatch: pytest.MonkeyPatch,
                                                                            dag: Any, serialized: Any) -> None:
    """plan_late as the run calls it (rendered templates): an event six hours late in an object committed since the
    last run's snapshot is a late hour; its neighbours below the cursor or in the run's range are not."""
    import lakepulse.archive
    import lakepulse.batch.late
    import lakepulse.batch.seam
    from lakepulse.archive import ArchiveObject
    from lakepulse.batch.airflow import plan_late

    info = _scheduled_interval(monkeypatch, serialized)
    planned = _plan(dag, info.data_interval, 2, None)
    six_back = HOUR.subtract(hours=6)
    # OFFSETS is the run's snapshot (partition 0 committed below 1234), the cursor the previous run's.
    found = [ArchiveObject(six_back, "events.raw", 0, 1210),  # committed since the cursor: late
             ArchiveObject(six_back, "events.raw", 0, 1234),  # not committed yet: the next run's
             ArchiveObject(six_back.subtract(hours=1), "events.raw", 0, 1000),  # below the cursor: built before
             ArchiveObject(HOUR.subtract(hours=2), "events.raw", 1, 950)]  # inside the run's range
    listed: list[Any] = []

    def objects(settings: Any, prefix: str, dates: Any) -> list[ArchiveObject]:
        listed.append((prefix, dates))
        return found

    monkeypatch.setattr(lakepulse.archive, "objects", objects)
    pending = HOUR.subtract(hours=20)  # left over by an earlier run (over its cap): taken first
    monkeypatch.setattr(lakepulse.batch.late, "read_cursor", lambda settings, uri: lakepulse.batch.late.Cursor(
        {"events.raw:0": 1200, "events.raw:1": 900}, (pending,)))
    monkeypatch.setattr(lakepulse.batch.seam, "read_seam", lambda settings, uri: HOUR)
    kwargs = {k: _render(dag, v, info.data_interval, 2, planned)
              for k, v in dag.get_task("plan_late").op_kwargs.items()}
    late = plan_late(**kwargs)
    assert late["hours"] == [pending.isoformat(), six_back.isoformat()] and late["carried"] == []
    assert late["ranges"] == [[pending.isoformat(), pending.add(hours=1).isoformat()],
                              [six_back.isoformat(), six_back.add(hours=1).isoformat()]]
    assert late["until"] == OFFSETS and late["since"] == {"events.raw:0": 1200, "events.raw:1": 900}
    assert listed and listed[0][0] == "raw"
    # The late_hours job parses what plan_late returned.
    from spark_jobs.late import parse_ranges

    ranges = parse_ranges(json.dumps(late["ranges"]))
    assert [(r.start, r.end) for r in ranges] == [(pending, pending.add(hours=1)), (six_back, six_back.add(hours=1))]
