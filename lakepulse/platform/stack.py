"""The local stack as a whole: provision → configure → start in waves → wait until ready → bootstrap."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lakepulse.platform.components.airflow import Airflow
from lakepulse.platform.components.apps import DEMO, DEMO_TENANT_PREFIX, Apps
from lakepulse.platform.components.base import Component, Context, Service
from lakepulse.platform.components.connect_sink import RawSink
from lakepulse.platform.components.kafka import Kafka
from lakepulse.platform.components.lake import Lake
from lakepulse.platform.components.minio import MinIO
from lakepulse.platform.components.pinot import Pinot
from lakepulse.platform.components.postgres import Postgres
from lakepulse.platform.components.spark import Spark
from lakepulse.platform.components.streaming import Streaming
from lakepulse.platform.components.trino import Trino
from lakepulse.platform.supervisor import RUNNING_STATES, Supervisor
from lakepulse.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
console = Console(stderr=True)


def components() -> list[Component]:
    """Every component, in bootstrap order (topics before the Pinot tables that read them; PostgreSQL's databases
    before Airflow and the apps that use them)."""
    return [MinIO(), Postgres(), Kafka(), RawSink(), Spark(), Pinot(), Trino(), Lake(), Airflow(), Apps(),
            Streaming()]


def context(settings: Settings | None = None) -> Context:
    return Context(settings=settings or get_settings(), repo=REPO)


@dataclass
class ServiceState:
    name: str
    state: str
    ready: bool
    url: str
    pid: int
    uptime: str
    extra: str


class ServiceFailed(RuntimeError):
    """A service exited or did not become ready; the message carries its log tail."""


def provision(ctx: Context, only: Iterable[str] | None = None) -> None:
    """Fetch/build every component's software into the cache (idempotent, resumable)."""
    wanted = set(only or [])
    for comp in components():
        if wanted and comp.name not in wanted:
            continue
        started = time.monotonic()
        comp.provision(ctx)
        console.print(f"[green]✓[/green] {comp.name:8} provisioned ({time.monotonic() - started:.0f}s)")


def all_services(ctx: Context) -> list[tuple[Component, Service]]:
    """Every (component, service) pair; writing each component's config files as a side effect."""
    return [(comp, svc) for comp in components() for svc in comp.services(ctx)]


def _log_tail(ctx: Context, name: str, lines: int = 25) -> str:
    log = ctx.logs / f"{name}.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _wait_ready(ctx: Context, sup: Supervisor, services: list[Service]) -> None:
    """Wait until every service answers; fail fast (with its log) when one dies."""
    pending = {s.name: s for s in services}
    started = time.monotonic()
    with console.status("") as status:
        while pending:
            elapsed = time.monotonic() - started
            status.update(f"waiting for {', '.join(pending)} [{elapsed:.0f}s]")
            for name, svc in list(pending.items()):
                state = sup.state(name)
                if state in {"FATAL", "EXITED", "BACKOFF"} and elapsed > 5:
                    raise ServiceFailed(f"{name} is {state}; last lines of {ctx.logs / name}.log:\n"
                                        + _log_tail(ctx, name))
                # RUNNING: supervisor's startsecs have passed, so `status` will call it ready too.
                if state == "RUNNING" and svc.ready():
                    console.print(f"[green]✓[/green] {name:16} ready at {svc.url} ({elapsed:.0f}s)")
                    del pending[name]
                elif elapsed > svc.start_timeout:
                    raise ServiceFailed(f"{name} not ready after {svc.start_timeout:.0f}s; last lines of "
                                        f"{ctx.logs / name}.log:\n" + _log_tail(ctx, name))
            time.sleep(1)


def up(ctx: Context, only: Iterable[str] | None = None, skip: Iterable[str] | None = None, demo: bool = True
       ) -> None:
    """Provision, start and bootstrap the stack (or only the named services, or all but `skip`);
    returns when every started service answers. `demo=False` also stops demo traffic that is running."""
    pairs = all_services(ctx)
    if not demo:
        skip = [*(skip or []), *(svc.name for _, svc in pairs if svc.name == DEMO)]
    names = {svc.name for _, svc in pairs}
    unknown = (set(only or []) | set(skip or [])) - names
    if unknown:
        raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {[s.name for _, s in pairs]}")
    wanted = (set(only or []) or names) - set(skip or [])
    chosen = [(c, s) for c, s in pairs if s.name in wanted]
    with_services = {c.name for c, _ in pairs}
    # Service-less components (jars, plugins) are provisioned on every run: a no-op once done, and
    # plugins must be in place before the processes that load them start.
    serviceless = {c.name for c in components() if c.name not in with_services}
    provision(ctx, only={c.name for c, _ in chosen} | serviceless)
    for comp in {c.name: c for c, _ in chosen}.values():
        with console.status(f"preparing {comp.name}"):
            comp.prepare(ctx)
    pairs = all_services(ctx)  # again: a service's config may depend on what was just provisioned
    chosen = [(c, s) for c, s in pairs if s.name in wanted]
    sup = Supervisor(ctx)
    sup.render([svc for _, svc in pairs])
    sup.start_daemon()
    if not demo and sup.state(DEMO) in RUNNING_STATES:
        sup.stop(DEMO)
        console.print("[green]✓[/green] demo traffic stopped")
    # Services of one `order` start together; the next wave waits until they all answer and every component
    # whose needs are now met has bootstrapped, so topics, buckets and tables exist before anything that uses
    # them starts (the streaming job on a fresh state needs the topics, Trino's views need the tables).
    bootstrapped: set[str] = set()
    for _, wave in groupby(sorted(chosen, key=lambda p: p[1].order), key=lambda p: p[1].order):
        services = [svc for _, svc in wave]
        for svc in services:
            sup.start(svc.name)
        _wait_ready(ctx, sup, services)
        bootstrapped |= bootstrap(ctx, pairs, skip=bootstrapped)
    bootstrap(ctx, pairs, skip=bootstrapped)
    console.print("[bold green]lakepulse is up[/bold green]")


def bootstrap(ctx: Context, pairs: list[tuple[Component, Service]], skip: Iterable[str] = ()) -> set[str]:
    """Bootstrap every component (but `skip`) whose needed services (declared, else its own) answer
    (idempotent); returns the names of those bootstrapped."""
    by_name = {svc.name: svc for _, svc in pairs}
    done = set()
    for comp in components():
        if comp.name in set(skip):
            continue
        own = [svc for c, svc in pairs if c.name == comp.name]
        needed = [by_name[n] for n in comp.bootstrap_needs] or own
        if all(svc.ready() for svc in needed):
            started = time.monotonic()
            with console.status(f"bootstrapping {comp.name}"):
                comp.bootstrap(ctx)
            console.print(f"[green]✓[/green] {comp.name:16} bootstrapped ({time.monotonic() - started:.0f}s)")
            done.add(comp.name)
    return done


def down(ctx: Context, purge: bool = False) -> list[Path]:
    """Stop every process of ours (supervisor stops whole process groups); `purge` also deletes every piece
    of the stack's state (returned): data of every store, checkpoints, alert state, generated config."""
    sup = Supervisor(ctx)
    if sup.is_running():
        # In waves, the reverse of the start order: a service stops while what it talks to still answers (Pinot
        # without ZooKeeper waited out its whole stop timeout; the streaming job without Kafka failed its batch).
        services = [svc for _, svc in all_services(ctx)]
        for _, wave in groupby(sorted(services, key=lambda s: -s.order), key=lambda s: s.order):
            stopping = list(wave)
            with console.status(f"stopping {', '.join(s.name for s in stopping)}"):
                sup.stop_together([s.name for s in stopping], timeout=max(s.stop_wait for s in stopping) + 15)
        with console.status("stopping supervisord"):
            sup.shutdown()
        console.print("[green]✓[/green] all services stopped")
    else:
        console.print("nothing running")
    if not purge:
        return []
    deleted = []
    for path in state_paths(ctx):
        if path.exists() or path.is_symlink():
            size = _size(path)
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            console.print(f"[green]✓[/green] deleted {path} ({size / 1e6:.1f} MB)")
            deleted.append(path)
    console.print(f"purged {len(deleted)} item(s); kept the logs in {ctx.logs}")
    return deleted


def state_paths(ctx: Context) -> list[Path]:
    """Everything `down --purge` deletes: the state dir but its logs (Kafka logs, MinIO objects, Pinot
    segments, Airflow's database, streaming checkpoints, alert state, ...), plus checkpoints and alert state
    that settings put elsewhere (a rules file kept elsewhere is the user's, not state)."""
    from lakepulse.alerts.service import AlertSettings
    from streaming.config import StreamingSettings

    s = ctx.settings
    alerts = AlertSettings()
    paths = [p for p in sorted(ctx.state.glob("*")) if p != ctx.logs] if ctx.state.exists() else []
    elsewhere = [StreamingSettings().checkpoints(s), alerts.state_path(s), alerts.heartbeat_path(s)]
    return paths + [p for p in elsewhere if not p.is_relative_to(ctx.state)]


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file())


def status(ctx: Context) -> list[ServiceState]:
    """Each service's supervisor state, readiness (a real request), URL and component facts."""
    sup = Supervisor(ctx)
    procs = sup.processes()
    rows = []
    extras: dict[str, dict[str, str]] = {}
    # A service-less component (e.g. the raw-archive connector) reports on the row of the last service it needs.
    riders: dict[str, list[Component]] = {}
    for comp in components():
        if comp.bootstrap_needs and not comp.services(ctx):
            riders.setdefault(comp.bootstrap_needs[-1], []).append(comp)
    for comp, svc in all_services(ctx):
        info = procs.get(svc.name, {})
        state = info.get("statename", "STOPPED")
        ready = state == "RUNNING" and svc.ready()
        if ready and comp.name not in extras:
            extras[comp.name] = comp.status(ctx)
        extra = dict(extras.get(comp.name, {})) if ready else {}
        if ready:
            for rider in riders.get(svc.name, []):
                extra.update(rider.status(ctx))
        rows.append(ServiceState(
            name=svc.name, state=state, ready=ready, url=svc.url, pid=int(info.get("pid") or 0),
            uptime=info.get("description", "") if state == "RUNNING" else "",
            extra=", ".join(f"{k}={v}" for k, v in extra.items()),
        ))
    return rows


def where_to_look(ctx: Context) -> list[tuple[str, str]]:
    """What a newcomer opens after `up`: each place with its address (and local credentials)."""
    from lakepulse.platform.components.airflow import airflow_password

    s = ctx.settings
    try:
        airflow_login = f"user {s.airflow_user}, password {airflow_password(ctx)}"
    except (OSError, KeyError, ValueError):
        airflow_login = f"user {s.airflow_user}, password in {ctx.state}/data/airflow/simple_auth_manager_passwords*"
    places = [
        ("dashboard", f"http://{s.bind_host}:{s.api_port}/ (sign in with a restaurant id, e.g. "
                      f"{DEMO_TENANT_PREFIX}rest-0001; an admin sign-in opens /app/operations)"),
        ("metrics API docs", f"http://{s.bind_host}:{s.api_port}/docs (GET /v1/catalog, "
                             "/v1/metrics/{metric}/series, /v1/metrics/{metric}/top, /v1/live)"),
        *demo_token(ctx),
        ("ingest API docs", f"http://{s.bind_host}:{s.ingest_port}/docs (POST /v1/events)"),
        ("Trino", f"{s.trino_url} (user {s.trino_user}; SQL: SELECT * FROM delta.lakepulse.metric_orders_placed)"),
        ("Airflow", f"{s.airflow_url} ({airflow_login}; DAGs lakepulse_hourly, lakepulse_backfill)"),
        ("PostgreSQL", f"{s.bind_host}:{s.postgres_port} (user {s.postgres_user}; databases lakepulse: dashboards and "
                       f"alert rules, airflow; superuser: psql -h {ctx.state / 'data' / 'postgres'} "
                       f"-p {s.postgres_port} -U postgres)"),
        ("Pinot", f"{s.pinot_controller_url} (query console; tables metrics_minute, orders_live)"),
        ("MinIO console", f"http://{s.bind_host}:{s.s3_console_port} (user {s.s3_access_key}; "
                          f"bucket {s.s3_bucket}: raw/ archive, delta/ tables)"),
        ("Kafka", f"{s.kafka_bootstrap} (topics {s.topic_events_raw}, {s.topic_events_dlq})"),
    ]
    if s.demo_rate > 0:
        places.append(("demo traffic", f"{s.demo_rate:g} events/s for tenants {DEMO_TENANT_PREFIX}rest-* "
                                       "(`lakepulse logs demo`; LAKEPULSE_DEMO_RATE=0 or `lakepulse up --no-demo` "
                                       "turns it off)"))
    return places


def demo_token(ctx: Context) -> list[tuple[str, str]]:
    """Locally, a 12-hour token for the first demo restaurant, so the API docs' Authorize button works at once."""
    from lakepulse.auth.tokens import mint_token

    s = ctx.settings
    if s.mode != "local" or not s.auth_enabled:
        return []
    tenant = f"{DEMO_TENANT_PREFIX}rest-0001"
    return [("demo token", mint_token(s, tenant=tenant)),
            ("", f"(tenant {tenant}, valid 12 h; others: `lakepulse token --tenant T` or `--role analyst`)")]


def status_table(rows: list[ServiceState]) -> Table:
    table = Table(title="lakepulse stack")
    for col in ("service", "state", "ready", "url", "pid", "uptime", "details"):
        table.add_column(col, no_wrap=col != "details")
    for r in rows:
        colour = "green" if r.ready else ("yellow" if r.state == "RUNNING" else "red")
        table.add_row(r.name, f"[{colour}]{r.state}[/{colour}]", "yes" if r.ready else "no", r.url,
                      str(r.pid or ""), r.uptime.rpartition("uptime ")[2], r.extra)
    return table
