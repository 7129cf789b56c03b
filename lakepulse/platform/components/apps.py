"""lakepulse's own processes: the ingest API (and, as they land, the streaming job and metrics API)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from lakepulse.platform.components.base import Component, Context, Service, http_ok


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
        )]
