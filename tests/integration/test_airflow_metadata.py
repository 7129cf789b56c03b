"""The running Airflow keeps its metadata in PostgreSQL: every program of it is configured with the settings' URL,
its sessions are on that database, the schema is at Airflow's head there, and what the API server reports is
what the database holds (the DAGs the DAG processor parsed, their pause state, the hourly DAG's runs)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from supervisor.options import ServerOptions

from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.platform.components.airflow import HOURLY_DAG, Airflow, airflow_password
from lakepulse.platform.components.base import Context
from lakepulse.platform.supervisor import Supervisor

pytestmark = [pytest.mark.integration,
              pytest.mark.needs("postgres", "airflow-api", "airflow-scheduler", "airflow-dag-processor",
                                "airflow-triggerer")]

CONN = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
# The DAG processor re-parses every file every 30 s (min_file_process_interval), so a parse time older than
# this means it does not write here.
PARSED_WITHIN = timedelta(minutes=5)
PARSE_WAIT_S = 120  # a bound, not a timing assertion


def _connect(stack: Context) -> psycopg.Connection[Any]:
    """The metadata database as Airflow reaches it (the application role's URL, without SQLAlchemy's driver)."""
    return psycopg.connect(stack.settings.airflow_metadata_url.replace("postgresql+psycopg://", "postgresql://", 1),
                           autocommit=True, connect_timeout=10)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_every_airflow_program_runs_with_the_postgresql_url_from_settings(stack: Context) -> None:
    supervisor = Supervisor(stack)
    options = ServerOptions()  # supervisord's own parser, on the config the running programs were started from
    options.configfile = str(supervisor.conf)
    options.process_config(do_usage=False)
    configured = {group.name: group.process_configs[0].environment for group in options.process_group_configs}
    processes = supervisor.processes()
    names = [svc.name for svc in Airflow().services(stack)]
    assert len(names) == 4
    read_back = 0
    for name in names:
        assert configured[name][CONN] == stack.settings.airflow_metadata_url, f"{name} is configured otherwise"
        pid = int(processes[name]["pid"])
        assert pid > 0, f"{name} is not running"
        # The process's own environment (the API server's program migrated first, then exec'd the server). The API
        # server retitles itself (setproctitle), which overwrites its environment block: nothing to read there.
        if environ := _environ(pid):
            conn = environ.get(CONN, "")
            assert conn.startswith("postgresql+psycopg://"), f"{name} runs without a PostgreSQL metadata URL"
            assert conn == stack.settings.airflow_metadata_url, f"{name} runs with another metadata URL"
            read_back += 1
    assert read_back >= 3, "the scheduler, DAG processor and triggerer keep their environment readable"


def test_airflows_sessions_and_schema_are_in_the_postgresql_database(stack: Context) -> None:
    with _connect(stack) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"alembic_version", "dag", "dag_run", "task_instance", "serialized_dag", "job"} <= tables, \
            f"Airflow's schema is not in the database (tables: {sorted(tables)[:10]})"
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        sessions = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchone()
    assert len(versions) == 1
    assert sessions is not None and sessions[0] >= 1, "no Airflow program holds a session on the database"


def test_the_dag_processor_writes_the_lakepulse_dags_into_postgresql(stack: Context) -> None:
    deadline = time.monotonic() + PARSE_WAIT_S
    while True:
        with _connect(stack) as conn:
            row = conn.execute("SELECT last_parsed_time, now() FROM dag WHERE dag_id = %s", (HOURLY_DAG,)).fetchone()
        if row and row[0] and row[1] - row[0] < PARSED_WITHIN:
            break
        assert time.monotonic() < deadline, f"{HOURLY_DAG} not parsed into PostgreSQL within {PARSED_WITHIN}: {row}"
        time.sleep(5)


def test_what_the_api_server_reports_is_what_postgresql_holds(stack: Context) -> None:
    settings = stack.settings
    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(stack))
    api_dags = {str(d["dag_id"]): bool(d["is_paused"]) for d in api.dags(tags=["lakepulse"])}
    api_runs = {str(r["dag_run_id"]) for r in api.runs(HOURLY_DAG)}
    with _connect(stack) as conn:
        db_dags = dict(conn.execute(
            "SELECT d.dag_id, d.is_paused FROM dag d JOIN dag_tag t ON t.dag_id = d.dag_id "
            "WHERE t.name = 'lakepulse' AND d.is_stale IS NOT TRUE").fetchall())
        db_runs = {r[0] for r in conn.execute("SELECT run_id FROM dag_run WHERE dag_id = %s", (HOURLY_DAG,))}
    assert HOURLY_DAG in api_dags
    assert api_dags == db_dags
    # Runs may start between the two reads: every run the API listed is in the database.
    assert api_runs <= db_runs
