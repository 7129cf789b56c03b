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
from lakepulse.platform.components.apps import Apps
from lakepulse.platform.components.base import Component, Context, Service
from lakepulse.platform.components.connect_sink import RawSink
from lakepulse.platform.components.kafka import Kafka
from lakepulse.platform.components.minio import MinIO
from lakepulse.platform.components.pinot import Pinot
from lakepulse.platform.components.spark import Spark
from lakepulse.platform.components.streaming import Streaming
from lakepulse.platform.components.trino import Trino
from lakepulse.platform.supervisor import Supervisor
from lakepulse.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
console = Console(stderr=True)


def components() -> list[Component]:
    """Every component, in bootstrap order (topics before the Pinot tables that read them)."""
    return [MinIO(), Kafka(), RawSink(), Spark(), Pinot(), Trino(), Airflow(), Apps(), Streaming()]


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
                if svc.ready():
                    console.print(f"[green]✓[/green] {name:16} ready at {svc.url} ({elapsed:.0f}s)")
                    del pending[name]
                elif elapsed > svc.start_timeout:
                    raise ServiceFailed(f"{name} not ready after {svc.start_timeout:.0f}s; last lines of "
                                        f"{ctx.logs / name}.log:\n" + _log_tail(ctx, name))
            time.sleep(1)


def up(ctx: Context, only: Iterable[str] | None = None, skip: Iterable[str] | None = None) -> None:
    """Provision, start and bootstrap the stack (or only the named services, or all but `skip`);
    returns when every started service answers."""
    pairs = all_services(ctx)
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
    # Services of one `order` start together; the next wave waits until they all answer.
    for _, wave in groupby(sorted(chosen, key=lambda p: p[1].order), key=lambda p: p[1].order):
        services = [svc for _, svc in wave]
        for svc in services:
            sup.start(svc.name)
        _wait_ready(ctx, sup, services)
    bootstrap(ctx, pairs)
    console.print("[bold green]lakepulse is up[/bold green]")


def bootstrap(ctx: Context, pairs: list[tuple[Component, Service]]) -> None:
    """Bootstrap every component whose needed services (declared, else its own) answer (idempotent)."""
    by_name = {svc.name: svc for _, svc in pairs}
    for comp in components():
        own = [svc for c, svc in pairs if c.name == comp.name]
        needed = [by_name[n] for n in comp.bootstrap_needs] or own
        if all(svc.ready() for svc in needed):
            with console.status(f"bootstrapping {comp.name}"):
                comp.bootstrap(ctx)


def down(ctx: Context, purge: bool = False) -> None:
    """Stop every process of ours (supervisor stops whole process groups); `purge` also deletes data."""
    sup = Supervisor(ctx)
    if sup.is_running():
        with console.status("stopping services"):
            sup.shutdown()
        console.print("[green]✓[/green] all services stopped")
    else:
        console.print("nothing running")
    if purge:
        shutil.rmtree(ctx.state / "data", ignore_errors=True)
        console.print(f"[green]✓[/green] deleted {ctx.state / 'data'}")


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


def status_table(rows: list[ServiceState]) -> Table:
    table = Table(title="lakepulse stack")
    for col in ("service", "state", "ready", "url", "pid", "uptime", "details"):
        table.add_column(col, no_wrap=col != "details")
    for r in rows:
        colour = "green" if r.ready else ("yellow" if r.state == "RUNNING" else "red")
        table.add_row(r.name, f"[{colour}]{r.state}[/{colour}]", "yes" if r.ready else "no", r.url,
                      str(r.pid or ""), r.uptime.rpartition("uptime ")[2], r.extra)
    return table
