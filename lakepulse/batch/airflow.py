"""What the DAG files call: spark-submit tasks for spark_jobs/, and the seam step. No I/O at import."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowFailException

from lakepulse.platform.components.spark import JVM_CONF

REPO = Path(__file__).resolve().parents[2]
SPARK_CONN_ID = "lakepulse_spark"
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "lakepulse",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(hours=2),
}
# The tick H of an hourly run: lakepulse_hourly's zero-interval trigger timetable gives data_interval_start ==
# data_interval_end == logical date == H, scheduled or triggered with logical_date=H. plan_range turns it into the
# normal range [H - 1h - lookback_hours, H) (the hour that just ended plus earlier hours for late arrivals),
# widened back to a lagging seam (seam.hourly_range).
HOURLY_END = "{{ data_interval_end.isoformat() }}"
# The range plan_range chose for this run (the normal one, widened back to a lagging seam): every range task and
# advance_seam read the same XCom, so the seam moves over exactly what was rebuilt, checked and reconciled.
PLANNED_START = "{{ ti.xcom_pull(task_ids='plan_range')['start'] }}"
PLANNED_END = "{{ ti.xcom_pull(task_ids='plan_range')['end'] }}"
# The archive snapshot plan_range took (the raw-archive connector's committed offsets) as --archived-before JSON:
# bronze and the quality gate read the same archive rows, however many late arrivals are uploaded in between.
ARCHIVED_BEFORE = "{{ ti.xcom_pull(task_ids='plan_range')['offsets'] | tojson }}"
# The run's staging id: bronze, gold, the gate and publish of one run work on the same stage (spark_jobs.staging).
STAGE_ID = "{{ run_id }}"
# The late hours plan_late found, as --ranges JSON for the late_hours job.
LATE_RANGES = "{{ ti.xcom_pull(task_ids='plan_late')['ranges'] | tojson }}"
# The late hours plan_late left for the next run (over the per-run cap), as JSON for record_late_cursor.
LATE_CARRIED = "{{ ti.xcom_pull(task_ids='plan_late')['carried'] | tojson }}"


class LakepulseSparkSubmitOperator(SparkSubmitOperator):
    """spark-submit of a spark_jobs/ script against the master and jars lakepulse's settings name."""

    def execute(self, context: Any) -> None:
        """Resolve master, jars and interpreter at run time (never at DAG parse time)."""
        from lakepulse.platform.components.spark import spark_jars
        from lakepulse.settings import get_settings

        settings = get_settings()
        # A connection given in the environment or the metadata DB wins; this is the local default.
        # JSON form: a `spark://local[2]` URI would silently become `--master yarn`.
        os.environ.setdefault(f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}",
                              json.dumps({"conn_type": "spark", "host": settings.spark_master}))
        self.jars = ",".join(str(j) for j in spark_jars(settings.cache_dir)) or None
        self.env_vars = {
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            **(self.env_vars or {}),
        }
        # Niceness is inherited: spark-submit and its JVM start at this one (the task process is this job's alone;
        # its supervisor, which heartbeats, keeps its own).
        os.nice(max(0, settings.batch_niceness - os.nice(0)))
        super().execute(context)


def spark_job(task_id: str, job: str, args: list[str], **kwargs: Any) -> LakepulseSparkSubmitOperator:
    """A task running `spark-submit spark_jobs/<job>.py <args>`."""
    return LakepulseSparkSubmitOperator(
        task_id=task_id,
        application=str(REPO / "spark_jobs" / f"{job}.py"),
        application_args=args,
        conn_id=SPARK_CONN_ID,
        name=f"lakepulse-{job}",
        conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", **JVM_CONF},
        # In local mode the driver runs the tasks: give it room for a day-sized range.
        driver_memory="4g",
        verbose=False,
        **kwargs,
    )


def range_args(start: str, end: str, extra: list[str] | None = None) -> list[str]:
    """The command-line arguments of a range job."""
    return ["--start", start, "--end", end, *(extra or [])]


def planned_range(tick: str, lookback_hours: int | str, max_catchup_hours: int | str,
                  seam: datetime | None) -> dict[str, str]:
    """plan_range's XCom for the run at `tick` given the stored seam (its pure part: no I/O)."""
    from lakepulse.batch.seam import hourly_range
    from spark_jobs.common import parse_time

    # Rendered templates arrive as strings (the DAG does not render native objects).
    start, end = hourly_range(parse_time(tick), int(lookback_hours), seam, int(max_catchup_hours))
    return {"start": start.isoformat(), "end": end.isoformat()}


def plan_range(tick: str, lookback_hours: int | str, max_catchup_hours: int | str,
               lake_root: str = "") -> dict[str, Any]:
    """Airflow callable: the range this hourly run rebuilds (from the tick, the params and the stored seam) and
    the archive snapshot it reads ("offsets": {"topic:partition": offset})."""
    from lakepulse.batch.seam import CatchupTooLongError, read_seam
    from lakepulse.platform.components.connect_sink import archived_offsets
    from lakepulse.settings import get_settings
    from spark_jobs.common import Lake

    settings = get_settings()
    # The seam advance_seam will check: the same lake, so a planned range never meets a SeamGapError there.
    seam = read_seam(settings, Lake.from_settings(settings, lake_root or None).seam_uri)
    try:
        planned: dict[str, Any] = dict(planned_range(tick, lookback_hours, max_catchup_hours, seam))
    except CatchupTooLongError as err:
        # Retrying cannot close the gap (only a backfill can): fail at once, S3 errors above still retry.
        raise AirflowFailException(str(err)) from err
    # Kafka errors fail the task (Airflow retries it): offsets that could not be read must not become zeros, under
    # which bronze would read nothing, the gate would pass and the seam would move.
    planned["offsets"] = archived_offsets(REPO, settings)
    return planned


def advance_seam(start: str, end: str, lake_root: str = "") -> dict[str, Any]:
    """Airflow callable: move the seam past [start, end) (after quality and reconcile succeeded)."""
    from lakepulse.batch.seam import advance
    from lakepulse.settings import get_settings
    from spark_jobs.common import Lake, parse_time

    settings = get_settings()
    lake = Lake.from_settings(settings, lake_root or None)
    return advance(settings, lake.seam_uri, lake.trino_schema, lake.delta_root, parse_time(start), parse_time(end))


def _offsets(value: str | dict[str, int]) -> dict[str, int]:
    """plan_range's offsets as a template renders them (JSON text), or as a dict."""
    given = json.loads(value) if isinstance(value, str) else value
    return {str(k): int(v) for k, v in given.items()}


def plan_late(start: str, end: str, offsets: str | dict[str, int], lake_root: str = "") -> dict[str, Any]:
    """Airflow callable (after advance_seam): the event hours behind the seam that received archived events between
    the late cursor and this run's snapshot `offsets`, outside the range [start, end) the run rebuilt, plus those
    earlier runs left pending (lakepulse.batch.late); "ranges" is what late_hours rebuilds now, "carried" what the
    cursor keeps for the next run."""
    from lakepulse import archive
    from lakepulse.batch.late import hour_ranges, late_hours, listing_dates, read_cursor, take_hours
    from lakepulse.batch.seam import read_seam, split_uri
    from lakepulse.settings import get_settings
    from spark_jobs.common import Lake, parse_time

    settings = get_settings()
    lake = Lake.from_settings(settings, lake_root or None)
    until = _offsets(offsets)
    cursor = read_cursor(settings, lake.late_cursor_uri)
    seam = read_seam(settings, lake.seam_uri)
    bucket, prefix = split_uri(lake.raw_root)
    if bucket != settings.s3_bucket:
        raise ValueError(f"the raw archive {lake.raw_root} is not in the bucket {settings.s3_bucket}")
    dates = listing_dates(datetime.now(UTC), settings.event_max_age_days)
    found = archive.objects(settings, prefix.rstrip("/"), dates)
    rebuilt = (parse_time(start), parse_time(end))
    hours, carried = take_hours(late_hours(found, cursor.offsets, until, rebuilt, seam), cursor.pending, rebuilt,
                                seam)
    return {
        "hours": [h.isoformat() for h in hours],
        "ranges": [[s.isoformat(), e.isoformat()] for s, e in hour_ranges(hours)],
        "carried": [h.isoformat() for h in carried],
        "since": cursor.offsets, "until": until, "seam": seam.isoformat() if seam else None,
        "objects_listed": len(found),
    }


def record_late_cursor(offsets: str | dict[str, int], carried: str | list[str] = "[]",
                       lake_root: str = "") -> dict[str, Any]:
    """Airflow callable (after late_hours succeeded): the late hours of this run's snapshot are built, except those
    plan_late carried over; the next run looks for objects committed after the snapshot, and takes the carried
    hours first."""
    from lakepulse.batch.late import Cursor, write_cursor
    from lakepulse.settings import get_settings
    from spark_jobs.common import Lake, parse_time

    settings = get_settings()
    lake = Lake.from_settings(settings, lake_root or None)
    pending = json.loads(carried) if isinstance(carried, str) else carried
    cursor = Cursor(_offsets(offsets), tuple(parse_time(h) for h in pending))
    write_cursor(settings, lake.late_cursor_uri, cursor)
    return {"cursor": cursor.offsets, "pending": [h.isoformat() for h in cursor.pending]}


def pinot_retention() -> dict[str, Any]:
    """Airflow callable: enforce the checked-in retention on Pinot's minute table."""
    from lakepulse.batch.pinot import enforce_retention
    from lakepulse.settings import get_settings

    return enforce_retention(get_settings().pinot_controller_url)
