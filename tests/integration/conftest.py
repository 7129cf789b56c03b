"""Integration tests talk to the real local stack (`lakepulse up`); nothing here is mocked.

The `stack` fixture waits (bounded) until the services a test needs answer — those named by its
`@pytest.mark.needs("kafka", ...)` marker, or every service of the stack without one — and fails with
their state when they do not: run `lakepulse up` (or `make test`, which does) first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from lakepulse.platform import stack as platform_stack
from lakepulse.platform.components.base import Context
from lakepulse.settings import Settings, get_settings

READY_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def ctx(settings: Settings) -> Context:
    return platform_stack.context(settings)


_ready: set[str] = set()


def _wait_for(ctx: Context, names: set[str] | None) -> None:
    services = {svc.name: svc for _, svc in platform_stack.all_services(ctx)}
    wanted = set(services) if names is None else names
    unknown = wanted - set(services)
    assert not unknown, f"unknown services in needs(): {sorted(unknown)}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while pending := [n for n in sorted(wanted - _ready)]:
        _ready.update(n for n in pending if services[n].ready())
        if not wanted - _ready:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"services not ready after {READY_TIMEOUT_S}s: {sorted(wanted - _ready)}; "
                        "run `lakepulse up` first (`lakepulse status` shows each service)")
        time.sleep(2)


@pytest.fixture
def stack(ctx: Context, request: pytest.FixtureRequest) -> Context:
    """The running local stack, once the services this test needs answer (bounded wait)."""
    marker = request.node.get_closest_marker("needs")
    _wait_for(ctx, set(marker.args) if marker else None)
    return ctx


@pytest.fixture
def run_id() -> str:
    """A unique id per test, so reruns against the same stack never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def spark(ctx: Context) -> Iterator[object]:
    """One Spark session for the integration suite: local[2], Delta and s3a on the stack's MinIO."""
    from lakepulse.spark_session import build_spark

    session = build_spark("lakepulse-integration-tests", ctx.settings)
    yield session
    session.stop()
