"""The DAG folder imports cleanly; every DAG has tags and retries; the batch DAGs exist with their params."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {"lakepulse_hourly", "lakepulse_backfill", "lakepulse_maintenance"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}


def test_expected_dags_exist(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert set(dagbag.dag_ids) >= EXPECTED


def test_every_dag_has_tags_and_retries(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_hourly_pipeline_order(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["lakepulse_hourly"]
    # Write (bronze, gold into the run's stage), audit (quality), publish; then Pinot, the seam, the late-data loop.
    order = ["plan_range", "bronze", "gold", "quality", "publish", "reconcile", "advance_seam", "plan_late",
             "late_hours", "record_late_cursor"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}


def test_backfill_params(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["lakepulse_backfill"]
    assert {"start", "end", "metrics"} <= set(dag.params.keys())
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "")
    rebuild = dag.get_task("rebuild")
    assert rebuild.application.endswith("spark_jobs/backfill.py")
    assert rebuild._conn_id == "lakepulse_spark"
    # Each run stages under its own id: two backfills of one range never share a stage.
    args = list(rebuild.application_args)
    assert args[args.index("--stage-id") + 1] == "{{ run_id }}"
