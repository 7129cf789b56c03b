"""Airflow 3 as separate supervised programs (API server, scheduler, DAG processor, triggerer), its metadata in
PostgreSQL: the stack's own server (database `airflow`) locally, `airflow_database_url` in cluster mode.

Not `airflow standalone`: it starts the log servers of the scheduler and triggerer on every interface,
and with the LocalExecutor the API server reads task logs from local files, so we skip them.

The schema is migrated by the API server's program, just before the server starts, not by `prepare`: `up` prepares
every component before it starts any service, so PostgreSQL does not answer yet then (on a fresh state its role
and databases do not even exist until its bootstrap). The API server starts in the wave after PostgreSQL's and is
ready only once it answers, and the other three programs start after it, so they find the schema at head. A
state dir from before this move keeps its SQLite file (`airflow.db`), unused: the PostgreSQL database starts
empty, so DAG runs and task history start again once (the DAG processor lists the DAGs within a refresh).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.platform.components.base import Component, Context, Service
from lakepulse.settings import Settings


def airflow_home(ctx: Context) -> Path:
    return ctx.data("airflow")


def airflow_bin() -> str:
    return str(Path(sys.executable).parent / "airflow")


def airflow_env(ctx: Context) -> dict[str, str]:
    """Environment every Airflow process of the stack shares (also used by tests and the CLI); it holds the
    metadata database's password, so it is for child processes, never for printing."""
    s = ctx.settings
    bin_dir = str(Path(sys.executable).parent)
    metadata = s.airflow_metadata_url
    return {
        "AIRFLOW_HOME": str(airflow_home(ctx)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        # Left unset, Airflow derives the async URL by swapping in asyncpg, which is not installed; psycopg 3
        # serves both (SQLAlchemy picks its async dialect for create_async_engine).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ctx.repo / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(not s.airflow_unpause_dags),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.airflow_user}:admin",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{s.airflow_url}/execution/",
        "AIRFLOW__API__HOST": s.bind_host,
        "AIRFLOW__API__PORT": str(s.port_of(s.airflow_url)),
        "AIRFLOW__API__BASE_URL": s.airflow_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(ctx.repo),
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
    }


def metadata_location(settings: Settings) -> str:
    """Where Airflow's metadata lives, fit to print: host, port and database, no credentials."""
    url = make_url(settings.airflow_metadata_url)
    return f"postgresql://{url.host}:{url.port or 5432}/{url.database}"


# `airflow db migrate` (creates or upgrades the schema; idempotent, and it takes PostgreSQL's advisory lock, so
# two at once are safe), then the API server in its place, so supervisor signals the server itself. One line:
# supervisord's config holds the command on one. $1 is the airflow executable, "$@" the server's command.
MIGRATE_THEN_SERVE = '"$1" db migrate && exec "$@"'


def api_server_command(settings: Settings) -> list[str]:
    """The API server's program: the metadata schema brought to head, then the server on bind_host only."""
    server = [airflow_bin(), "api-server", "--host", settings.bind_host,
              "--port", str(settings.port_of(settings.airflow_url)), "--workers", "1"]
    return ["/bin/sh", "-c", MIGRATE_THEN_SERVE, "airflow-api", *server]


def airflow_password(ctx: Context) -> str:
    """The admin password the API server generated for the simple auth manager."""
    generated = airflow_home(ctx) / "simple_auth_manager_passwords.json.generated"
    return str(json.loads(generated.read_text())[ctx.settings.airflow_user])


def airflow_health(url: str) -> dict[str, dict[str, str]]:
    """The API server's health report ({} when it does not answer)."""
    try:
        return dict(httpx.get(f"{url}/api/v2/monitor/health", timeout=3).json())
    except (httpx.HTTPError, ValueError):
        return {}


def _healthy(url: str, part: str) -> Callable[[], bool]:
    return lambda: airflow_health(url).get(part, {}).get("status") == "healthy"


class Airflow(Component):
    name = "airflow"

    def prepare(self, ctx: Context) -> None:
        """Write airflow.cfg with its generated secrets (JWT, Fernet, API) once, before any program starts, so
        all four read the same ones; the database is not touched (see the module docstring)."""
        out = subprocess.run([airflow_bin(), "config", "get-value", "core", "executor"], env=airflow_env(ctx),
                             capture_output=True, text=True, cwd=airflow_home(ctx))
        if out.returncode != 0:
            raise RuntimeError(f"airflow could not read its configuration:\n{out.stdout[-2000:]}\n"
                               f"{out.stderr[-2000:]}")

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        url = s.airflow_url
        common = {"env": airflow_env(ctx), "directory": airflow_home(ctx), "url": url, "start_timeout": 300.0}
        return [
            # After PostgreSQL (order 5) and its bootstrap, which creates the role and the `airflow` database.
            Service(name="airflow-api", order=20, ready=_healthy(url, "metadatabase"),
                    command=api_server_command(s), **common),  # type: ignore[arg-type]
            Service(name="airflow-scheduler", order=25, ready=_healthy(url, "scheduler"),
                    command=[airflow_bin(), "scheduler", "--skip-serve-logs"], **common),  # type: ignore[arg-type]
            Service(name="airflow-dag-processor", order=25, ready=_healthy(url, "dag_processor"),
                    command=[airflow_bin(), "dag-processor"], **common),  # type: ignore[arg-type]
            Service(name="airflow-triggerer", order=25, ready=_healthy(url, "triggerer"),
                    command=[airflow_bin(), "triggerer", "--skip-serve-logs"], **common),  # type: ignore[arg-type]
        ]

    def bootstrap(self, ctx: Context) -> None:
        """Pause or unpause the scheduled DAGs the DAG processor already knows, as the setting says (new ones
        get it from DAGS_ARE_PAUSED_AT_CREATION), so the batch layer runs by itself."""
        api = _api(ctx)
        wanted_paused = not ctx.settings.airflow_unpause_dags
        for dag in api.dags(tags=["lakepulse"]):
            if dag.get("timetable_summary") not in (None, "None") and dag.get("is_paused") != wanted_paused:
                api.set_paused(str(dag["dag_id"]), wanted_paused)

    def status(self, ctx: Context) -> dict[str, str]:
        try:
            api = _api(ctx, timeout=5)
            dags = {str(d["dag_id"]): d for d in api.dags(tags=["lakepulse"])}
            hourly = dags.get(HOURLY_DAG)
            last = api.last_run(HOURLY_DAG) if hourly else None
        except (httpx.HTTPError, OSError, KeyError, ValueError, RuntimeError):
            return {}
        facts = {"metadata": metadata_location(ctx.settings), "dags": str(len(dags))}
        if hourly:
            facts["hourly"] = "paused" if hourly.get("is_paused") else "unpaused"
            facts["last hourly run"] = f"{last['logical_date']} {last['state']}" if last else "none yet"
        return facts


HOURLY_DAG = "lakepulse_hourly"


def _api(ctx: Context, timeout: float = 30) -> AirflowApi:
    return AirflowApi.login(ctx.settings.airflow_url, ctx.settings.airflow_user, airflow_password(ctx), timeout)
