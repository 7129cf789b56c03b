"""End-to-end tests use the integration suite's stack fixtures (the real, running stack) and share one
`served` hourly run: posting, archiving and an Airflow run take minutes, so every e2e check reads the same one."""

from collections.abc import Iterator

import pytest

from lakepulse.platform.components.base import Context
from tests.e2e.served import Served, serve
from tests.integration.conftest import _wait_for, ctx, run_id, settings, stack  # noqa: F401 - fixtures by name

NEEDS = ("ingest", "kafka", "connect", "minio", "pinot", "streaming", "trino", "airflow-api", "airflow-scheduler",
         "airflow-dag-processor")


@pytest.fixture(scope="session")
def served(ctx: Context) -> Iterator[Served]:  # noqa: F811 - ctx is the imported fixture
    """Traffic posted through the ingest API, archived, and one hourly run over it (see tests/e2e/served.py)."""
    _wait_for(ctx, set(NEEDS))
    yield serve(ctx)
