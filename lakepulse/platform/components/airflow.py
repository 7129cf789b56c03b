"""Airflow 3 (`airflow standalone`: API server, scheduler, DAG processor, triggerer) on SQLite."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from lakepulse.platform.components.base import Component, Context, Service


def airflow_home(ctx: Context) -> Path:
    return ctx.data("airflow")


def airflow_env(ctx: Context) -> dict[str, str]:
    """Environment every Airflow process of the stack shares (also used by tests and the CLI)."""
    s = ctx.settings
    bin_dir = str(Path(sys.executable).parent)
    return {
        "AIRFLOW_HOME": str(airflow_home(ctx)),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ctx.repo / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.airflow_user}:admin",
        "AIRFLOW__API__HOST": s.bind_host,
        "AIRFLOW__API__PORT": str(s.port_of(s.airflow_url)),
        "AIRFLOW__API__BASE_URL": s.airflow_url,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(ctx.repo),
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
    }


def airflow_password(ctx: Context) -> str:
    """The admin password `airflow standalone` generated for the simple auth manager."""
    generated = airflow_home(ctx) / "simple_auth_manager_passwords.json.generated"
    return str(json.loads(generated.read_text())[ctx.settings.airflow_user])


def airflow_healthy(url: str) -> bool:
    """True when the API server answers and reports a healthy scheduler and DAG processor."""
    try:
        health = httpx.get(f"{url}/api/v2/monitor/health", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return False
    return all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler"))


class Airflow(Component):
    name = "airflow"

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        return [Service(
            name="airflow",
            command=[str(Path(sys.executable).parent / "airflow"), "standalone"],
            env=airflow_env(ctx),
            ready=lambda: airflow_healthy(s.airflow_url),
            url=s.airflow_url,
            directory=airflow_home(ctx),
            order=20,
            start_timeout=300,
        )]

    def status(self, ctx: Context) -> dict[str, str]:
        try:
            token = httpx.post(f"{ctx.settings.airflow_url}/auth/token", timeout=3,
                               json={"username": ctx.settings.airflow_user, "password": airflow_password(ctx)})
            dags = httpx.get(f"{ctx.settings.airflow_url}/api/v2/dags", timeout=3,
                             headers={"Authorization": f"Bearer {token.json()['access_token']}"}).json()
        except (httpx.HTTPError, OSError, KeyError, ValueError):
            return {}
        return {"dags": str(dags.get("total_entries", 0))}
