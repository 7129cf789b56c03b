"""Property-based tests of the ingest API from its own OpenAPI schema, with the real broker behind it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from lakepulse.ingest.app import create_app
from lakepulse.settings import get_settings
from tests.integration.ingest_fixtures import topics

pytestmark = [pytest.mark.integration, pytest.mark.needs("kafka")]

RUN = uuid.uuid4().hex[:8]
# Unique topics, created for the module and deleted after: what the fuzzer gets accepted reaches no consumer.
APP = create_app(
    get_settings().model_copy(
        update={"topic_events_raw": f"it.{RUN}.fuzz.raw", "topic_events_dlq": f"it.{RUN}.fuzz.dlq"}
    ),
    delivery_timeout_s=2.0,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def fuzz_topics() -> Iterator[list[str]]:
    settings = APP.state.settings
    with topics(settings.kafka_bootstrap, [settings.topic_events_raw, settings.topic_events_dlq]) as names:
        yield names


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: object, value: object) -> bytes:
    return value.encode() if isinstance(value, str) else str(value).encode()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_except_the_documented_503(case: schemathesis.Case) -> None:
    response = case.call()
    documented = case.operation.definition.raw.get("responses", {})
    if response.status_code >= 500:
        assert response.status_code == 503 and "503" in documented, response.text
        assert response.headers.get("retry-after")
    else:
        # 405 answers the coverage phase's probes with methods the operation does not have.
        assert str(response.status_code) in {*documented, "405"}, (response.status_code, response.text)
