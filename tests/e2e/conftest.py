"""End-to-end tests use the integration suite's stack fixtures (the real, running stack)."""

from tests.integration.conftest import ctx, run_id, settings, stack  # noqa: F401 - fixtures by name
