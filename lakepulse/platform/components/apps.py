"""lakepulse's own processes: the ingest API and the demo traffic that feeds it (and, as it lands, the
metrics API)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from lakepulse.platform.components.base import Component, Context, Service, http_ok

DEMO = "demo"


def metrics_dir(ctx: Context) -> Path:
    """Where the ingest workers share Prometheus counters (so /metrics sums over every worker)."""
    return ctx.state / "prometheus" / "ingest"


class Apps(Component):
    name = "apps"

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        bin_dir = Path(sys.executable).parent
        ingest_url = f"http://{s.bind_host}:{s.ingest_port}"
        uvicorn = [str(bin_dir / "uvicorn"), "--factory", "lakepulse.ingest.app:create_app",
                   "--host", s.bind_host, "--port", str(s.ingest_port), "--workers", "2", "--no-access-log"]
        prom = shlex.quote(str(metrics_dir(ctx)))
        return [Service(
            name="ingest",
            # prometheus-client's multiprocess mode needs an empty directory at every (re)start.
            command=["/bin/sh", "-c", f"rm -rf {prom} && mkdir -p {prom} && exec {shlex.join(uvicorn)}"],
            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(ctx))},
            ready=lambda: http_ok(f"{ingest_url}/health"),
            url=ingest_url,
            directory=ctx.repo,
            order=30,
        ), *self._demo(ctx, bin_dir, ingest_url)]

    def _demo(self, ctx: Context, bin_dir: Path, ingest_url: str) -> list[Service]:
        """Realistic traffic at a modest rate (a little late, duplicate and malformed) through the ingest API,
        for a year of wall time; started last, once the speed layer runs. None when demo_rate is 0."""
        s = ctx.settings
        if s.demo_rate <= 0:
            return []
        generate = [str(bin_dir / "lakepulse"), "generate", "--target", "api", "--api-url", ingest_url,
                    "--rate", str(s.demo_rate), "--duration", str(365 * 86400), "--tenants", str(s.demo_tenants),
                    "--run-id", "demo-", "--late-fraction", "0.01", "--lateness", "300",
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
