"""`lakepulse backfill`: trigger the backfill DAG through Airflow's REST API and follow it to the end."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.settings import get_settings

BACKFILL_DAG = "lakepulse_backfill"
console = Console()


def backfill(
    start: Annotated[str, typer.Option(help="Inclusive start, RFC 3339 (e.g. 2026-05-01T00:00:00Z)")],
    end: Annotated[str, typer.Option(help="Exclusive end, RFC 3339")],
    metrics: Annotated[list[str] | None, typer.Option("--metric", help="Only these metrics (repeatable)")] = None,
    reconcile: Annotated[bool, typer.Option(help="Repair Pinot's rows of the range")] = True,
    wait: Annotated[bool, typer.Option(help="Follow the run until it finishes")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to follow the run")] = 3 * 3600.0,
) -> None:
    """Rebuild [start, end) of the batch layer from the raw archive (runs the lakepulse_backfill DAG)."""
    from lakepulse.platform import stack
    from lakepulse.platform.components.airflow import airflow_password
    from spark_jobs.common import TimeRange, parse_time

    try:
        TimeRange(parse_time(start), parse_time(end))  # refuse a bad range before Airflow sees it
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    settings = get_settings()
    api = AirflowApi.login(settings.airflow_url, settings.airflow_user, airflow_password(stack.context(settings)))
    conf = {"start": start, "end": end, "metrics": list(metrics or []), "reconcile": reconcile}
    run_id = api.trigger(BACKFILL_DAG, conf)
    console.print(f"triggered {BACKFILL_DAG} run [bold]{run_id}[/bold] for [{start}, {end})")
    if not wait:
        return

    def show(state: str, tasks: dict[str, str]) -> None:
        console.print(f"  {state:<8} " + ", ".join(f"{t}={s}" for t, s in sorted(tasks.items())))

    final = api.wait(BACKFILL_DAG, run_id, timeout, show)
    if final != "success":
        console.print(f"[red]backfill {final}[/red]: see the task log in the Airflow UI ({settings.airflow_url})")
        raise typer.Exit(1)
    console.print("[green]backfill succeeded[/green]")
