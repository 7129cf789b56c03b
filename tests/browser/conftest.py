"""Browser tests: pytest-playwright driving Debian's Chromium (`make browser` installs it; Playwright's own
browser download cannot work here) against the metrics API app, run in-process under uvicorn on a free port with
the real engine readers of the running stack (`lakepulse up`); its live push hub reads the stack's Kafka topics, so
the pages' streams (GET /v1/stream) carry what the running ingest API and streaming job produce."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from lakepulse.api.app import create_app
from lakepulse.api.push import PushHub
from lakepulse.api.web.pages import VENDOR_DIR
from lakepulse.platform.components.base import Context
from tests.integration.conftest import _wait_for, ctx, run_id, settings, stack  # noqa: F401 - fixtures by name
from tests.integration.ingest_fixtures import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# As root in a sandbox without a GPU; and no background connections, which this machine's closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts" / "browser"
NEEDS = ("trino", "pinot", "minio", "ingest", "streaming")
SERVER_READY_S = 60


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Launch /usr/bin/chromium (Debian's), headless."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium and chromium-driver")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """A desktop-sized context in a fixed locale and zone, so expected formatting is known."""
    return {**browser_context_args, "locale": "en-US", "timezone_id": "Europe/Berlin",
            "viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (test-artifacts/browser, not committed)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass(frozen=True)
class Served:
    """The in-process API the browser opens: its URL and its app (whose push hub the live tests wait on)."""

    url: str
    app: FastAPI

    @property
    def hub(self) -> PushHub:
        hub: PushHub = self.app.state.hub
        return hub


@pytest.fixture(scope="session")
def served(ctx: Context) -> Iterator[Served]:  # noqa: F811 - ctx is the imported fixture
    """The metrics API app (pages included) under uvicorn in this process, on a free 127.0.0.1 port."""
    _wait_for(ctx, set(NEEDS))
    if not (VENDOR_DIR / "uPlot.iife.min.js").is_file():
        pytest.fail("web/vendor has no uPlot: run `make web` (part of `make setup`)")
    port = free_port()
    app = create_app(ctx.settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=3))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), SERVER_READY_S, f"the API on port {port}")
    assert server.started, "uvicorn stopped while starting; see the log above"
    yield Served(f"http://127.0.0.1:{port}", app)
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="session")
def dashboard(served: Served) -> str:
    """The URL of the in-process API the browser opens."""
    return served.url
