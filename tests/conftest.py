"""Settings for the whole test run."""

import logging

import pytest

# py4j logs at INFO when its connections are garbage-collected at interpreter exit. Airflow's logging config
# (imported by the DAG tests) lets INFO through to streams pytest has closed by then, which printed a
# "--- Logging error ---" traceback after the summary.
logging.getLogger("py4j").setLevel(logging.WARNING)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API leaves an event loop running in the main thread, and code under
    test that starts or looks up an event loop there (asyncio.run, the push hub's handoff) would fail or wait on it."""
    items.sort(key=lambda item: "browser" in item.path.parts)
