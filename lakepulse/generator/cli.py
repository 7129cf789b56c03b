"""`lakepulse generate`: realistic marketplace load to a file, the ingest API or Kafka."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lakepulse.auth.tokens import RenewingToken
from lakepulse.generator.scenario import GeneratorConfig, generate_events
from lakepulse.generator.targets import ApiTarget, FileTarget, KafkaTarget, Target, paced, run
from lakepulse.sdk import IngestClient
from lakepulse.settings import Settings, get_settings

TOKEN_ENV = "LAKEPULSE_INGEST_TOKEN"
# A token minted here lives an hour and is renewed at half-life, so a leaked one is soon useless while a run
# of any length (the demo runs for a year) keeps a valid one.
LOCAL_TOKEN_TTL = timedelta(hours=1)


class TargetKind(StrEnum):
    file = "file"
    api = "api"
    kafka = "kafka"


def _parse_start(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise typer.BadParameter("--start needs a zone, e.g. 2024-05-01T11:00:00Z")
    return moment


def api_token(token: str | None, settings: Settings) -> str | Callable[[], str] | None:
    """The bearer token the api target sends: the given one (--token / LAKEPULSE_INGEST_TOKEN); else, locally,
    an admin token minted from the local settings and renewed; else (cluster mode) None when auth is off."""
    if token is not None and token.strip():
        return token.strip()
    if settings.mode == "local":
        # The generator writes whatever tenants its options name, so the token may write every tenant; the
        # local signing secret it is minted with could mint any token anyway.
        return RenewingToken(settings, ttl=LOCAL_TOKEN_TTL, role="admin", subject="local-generator")
    if settings.auth_enabled:
        raise typer.BadParameter(
            f"cluster mode: the ingest API needs a producer token; pass --token or set {TOKEN_ENV}",
            param_hint="--token",
        )
    return None


def generate(
    target: Annotated[
        TargetKind, typer.Option(help="Where events go: an NDJSON file, the ingest API or Kafka")
    ] = (TargetKind.file),
    output: Annotated[Path, typer.Option(help="NDJSON file for --target file")] = Path("events.ndjson"),
    api_url: Annotated[
        str | None, typer.Option(help="Ingest API base URL (default: settings' ingest_port)")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENV,
            show_default=False,
            help="Bearer token for --target api (a producer token for the generated tenants, or admin); "
            "default locally: one minted from the local settings",
        ),
    ] = None,
    rate: Annotated[float, typer.Option(min=0.001, help="Mean events per second (steady state)")] = 1000.0,
    duration: Annotated[float, typer.Option(min=0.001, help="Run length in wall seconds")] = 60.0,
    seed: Annotated[int, typer.Option(help="Same seed and --start give the same events")] = 42,
    tenants: Annotated[int, typer.Option(min=1, help="Number of restaurants")] = 20,
    start: Annotated[
        str | None, typer.Option(help="Event time of the start, RFC 3339 (default: now)")
    ] = None,
    time_scale: Annotated[float, typer.Option(min=0.001, help="Event-time seconds per wall second")] = 1.0,
    late_fraction: Annotated[float, typer.Option(min=0, max=1, help="Share of events sent late")] = 0.0,
    lateness: Annotated[float, typer.Option(min=0, help="How late, in event-time seconds (x1..1.5)")] = 600.0,
    duplicate_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Share resent with the same id")
    ] = 0.0,
    out_of_order_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Share slightly reordered")
    ] = 0.0,
    disorder: Annotated[float, typer.Option(min=0, help="Max reordering delay, event-time seconds")] = 5.0,
    malformed_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Share of extra invalid events")
    ] = 0.0,
    run_id: Annotated[str, typer.Option(help="Prefix of tenant ids, to tell runs apart")] = "",
    pace: Annotated[
        bool, typer.Option(help="Send at the wall-clock rate (api/kafka); off: as fast as possible")
    ] = True,
) -> None:
    """Generate marketplace events (orders, couriers, ratings, page views, errors) with realistic mess."""
    config = GeneratorConfig(
        rate=rate,
        duration_s=duration,
        seed=seed,
        tenants=tenants,
        start=_parse_start(start),
        time_scale=time_scale,
        late_fraction=late_fraction,
        lateness_s=lateness,
        duplicate_fraction=duplicate_fraction,
        out_of_order_fraction=out_of_order_fraction,
        disorder_s=disorder,
        malformed_fraction=malformed_fraction,
        run_id=run_id,
    )
    # Fix "now" once, so that generation and pacing share one start.
    config = replace(config, start=config.window_start)
    settings = get_settings()
    sink: Target
    if target is TargetKind.file:
        sink = FileTarget(output)
    elif target is TargetKind.api:
        url = api_url or f"http://127.0.0.1:{settings.ingest_port}"
        sink = ApiTarget(IngestClient(url, token=api_token(token, settings)))
    else:
        sink = KafkaTarget(settings.kafka_bootstrap, settings.topic_events_raw, settings.topic_events_dlq)
    events = generate_events(config)
    if pace and target is not TargetKind.file:
        events = paced(events, config)
    console = Console(stderr=True)
    expected = int(rate * duration * (1 + duplicate_fraction + malformed_fraction))
    with Progress(
        TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("events", total=expected)
        counts = run(events, sink, on_event=lambda: progress.advance(task))
    summary = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
    console.print(f"{sum(counts.values())} events to {target.value} ({summary})")
