"""lakepulse's own processes: the ingest API (and, as they land, the streaming job and metrics API)."""

from __future__ import annotations

import sys
from pathlib import Path

from lakepulse.platform.components.base import Component, Context, Service, http_ok


class Apps(Component):
    name = "apps"

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        bin_dir = Path(sys.executable).parent
        ingest_url = f"http://{s.bind_host}:{s.ingest_port}"
        return [Service(
            name="ingest",
            command=[str(bin_dir / "uvicorn"), "--factory", "lakepulse.ingest.app:create_app",
                     "--host", s.bind_host, "--port", str(s.ingest_port), "--workers", "2",
                     "--no-access-log"],
            ready=lambda: http_ok(f"{ingest_url}/health"),
            url=ingest_url,
            directory=ctx.repo,
            order=30,
        )]
