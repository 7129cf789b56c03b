"""The speed layer's processes: the Spark streaming job and the alert evaluator."""

from __future__ import annotations

import sys

from lakepulse.alerts.service import AlertSettings, is_alive
from lakepulse.platform.components.base import Component, Context, Service, http_ok
from streaming.config import StreamingSettings


class Streaming(Component):
    """`python -m streaming.job` (ready when every query runs and has reported progress) and
    `python -m lakepulse.alerts` (rules from PostgreSQL; ready while its consume loop touches its heartbeat)."""

    name = "streaming"

    def services(self, ctx: Context) -> list[Service]:
        streaming = StreamingSettings()
        url = f"http://{streaming.metrics_host}:{streaming.metrics_port}"
        # Checkpoints live under the state dir, so `down --purge` resets the speed layer with the data.
        env = {"LAKEPULSE_STREAMING_CHECKPOINT_DIR": str(streaming.checkpoints(ctx.settings))}
        return [
            Service(
                name="streaming",
                command=[sys.executable, "-m", "streaming.job"],
                ready=lambda: http_ok(f"{url}/healthz"),
                url=f"{url}/metrics",
                env=env,
                directory=ctx.repo,
                # Spark starts six queries after the JVM; first micro-batches compile code.
                start_timeout=420.0,
                # Queries stop between micro-batches; checkpoints make a harder stop safe anyway.
                stop_wait=60,
                order=60,
            ),
            Service(
                name="alerts",
                command=[sys.executable, "-m", "lakepulse.alerts"],
                ready=lambda: is_alive(AlertSettings().heartbeat_path(ctx.settings)),
                url="kafka://" + ctx.settings.topic_alerts,
                directory=ctx.repo,
                # Rules and history are in PostgreSQL: it starts at order 5, and `up` bootstraps it (role,
                # databases, migrations) before the next wave; topics exist from order 20.
                order=60,
            ),
        ]

    def status(self, ctx: Context) -> dict[str, str]:
        """Stream lag and freshness from the job's readiness endpoint, for `lakepulse status`."""
        import httpx

        streaming = StreamingSettings()
        try:
            health = httpx.get(f"http://{streaming.metrics_host}:{streaming.metrics_port}/healthz",
                               timeout=3).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return {"lag": str(health.get("offsets_behind", "?")),
                "freshness_s": str(health.get("freshness_s", "?"))}
