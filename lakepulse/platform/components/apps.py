"""lakepulse's own processes: the ingest API, the metrics API and the demo traffic that feeds them."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from lakepulse.platform.components.base import Component, Context, Service, http_ok

DEMO = "demo"
# The demo service's generator run id: its restaurants are demo-rest-0001, demo-rest-0002, ...
DEMO_RUN_ID = "demo"
DEMO_TENANT_PREFIX = f"{DEMO_RUN_ID}-"


def metrics_dir(ctx: Context, app: str = "ingest") -> Path:
    """Where an app's workers share Prometheus counters (so /metrics sums over every worker)."""
    return ctx.state / "prometheus" / app


def answers_dir(ctx: Context, app: str = "api") -> Path:
    """Where an app's workers share their cached answers (lakepulse/api/shared_answers.py)."""
    return ctx.state / "run" / f"{app}-answers"


def uvicorn_service(ctx: Context, name: str, factory: str, port: int, workers: int, order: int,
                    share_answers: bool = False) -> Service:
    """One of our FastAPI apps under uvicorn with `workers` processes, their Prometheus files (and, with
    `share_answers`, their cached answers) shared."""
    s = ctx.settings
    url = f"http://{s.bind_host}:{port}"
    uvicorn = [str(Path(sys.executable).parent / "uvicorn"), "--factory", factory, "--host", s.bind_host,
               "--port", str(port), "--workers", str(workers), "--no-access-log"]
    # prometheus-client's multiprocess mode needs an empty directory at every (re)start; the answers of a
    # previous run are dropped too.
    prom = metrics_dir(ctx, name)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(prom)}
    fresh = [prom]
    if share_answers:
        answers = answers_dir(ctx, name)
        env["LAKEPULSE_API_SHARED_ANSWERS_DIR"] = str(answers)
        fresh.append(answers)
    dirs = " ".join(shlex.quote(str(d)) for d in fresh)
    return Service(
        name=name,
        command=["/bin/sh", "-c", f"rm -rf {dirs} && mkdir -p -m 700 {dirs} && exec {shlex.join(uvicorn)}"],
        env=env,
        ready=lambda: http_ok(f"{url}/health"),
        url=url,
        directory=ctx.repo,
        order=order,
    )


class Apps(Component):
    name = "apps"

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        bin_dir = Path(sys.executable).parent
        ingest_url = f"http://{s.bind_host}:{s.ingest_port}"
        return [
            uvicorn_service(ctx, "ingest", "lakepulse.ingest.app:create_app", s.ingest_port, 2, order=30),
            # After the engines it reads (Trino, Pinot), though it answers 503 per request while one is down.
            uvicorn_service(ctx, "api", "lakepulse.api.app:create_app", s.api_port, s.api_workers, order=60,
                            share_answers=True),
            *self._demo(ctx, bin_dir, ingest_url),
        ]

    def _demo(self, ctx: Context, bin_dir: Path, ingest_url: str) -> list[Service]:
        """Realistic traffic at a modest rate (a little late, duplicate and malformed) through the ingest API,
        for a year of wall time; started last, once the speed layer runs. None when demo_rate is 0."""
        s = ctx.settings
        if s.demo_rate <= 0:
            return []
        generate = [str(bin_dir / "lakepulse"), "generate", "--target", "api", "--api-url", ingest_url,
                    "--rate", str(s.demo_rate), "--duration", str(365 * 86400), "--tenants", str(s.demo_tenants),
                    "--run-id", DEMO_RUN_ID, "--late-fraction", "0.01", "--lateness", "300",
                    "--duplicate-fraction", "0.01", "--out-of-order-fraction", "0.05", "--malformed-fraction", "0.005"]
        return [Service(
            name=DEMO,
            # A new seed per start: the same seed would resend the same event ids, which are no-ops downstream.
            command=["/bin/sh", "-c", f'exec {shlex.join(generate)} --seed "$(date +%s)"'],
            # Its readiness is its target's: the generator has no endpoint, and supervisor reports its exit.
            ready=lambda: http_ok(f"{ingest_url}/health"),
            url=ingest_url,
            directory=ctx.repo,
            order=70,
            stop_wait=10,
        )]
