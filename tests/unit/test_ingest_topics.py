"""The ingest service's start-up check of its event size limit against the topics' max.message.bytes (pure)."""

from __future__ import annotations

import pytest

from lakepulse.ingest.sink import producer_config
from lakepulse.ingest.topics import TopicLimitError, check_event_limit, record_overhead


def test_a_limit_both_topics_hold_passes() -> None:
    # Kafka's default max.message.bytes (1,048,588) holds the default limit with its overhead.
    check_event_limit(900_000, {"events.raw": 1_048_588, "events.dlq": 1_048_588})
    check_event_limit(900_000, {})  # topics not created yet: nothing to hold against


def test_a_limit_a_topic_cannot_hold_is_refused_naming_the_topic_and_the_fix() -> None:
    with pytest.raises(TopicLimitError) as refused:
        check_event_limit(2_000_000, {"events.raw": 10_485_760, "events.dlq": 1_048_588})
    assert str(refused.value) == (
        "LAKEPULSE_INGEST_MAX_EVENT_BYTES=2,000,000 allows events that Kafka would refuse (events.dlq "
        "max.message.bytes=1,048,588; an event of that size needs 2,021,024 bytes with its record overhead): lower "
        "the setting or raise the topics' max.message.bytes"
    )


def test_the_overhead_is_counted_right_at_the_edge() -> None:
    limit = 1_000_000
    needed = limit + record_overhead(limit)
    check_event_limit(limit, {"events.raw": needed})
    with pytest.raises(TopicLimitError, match="events.raw max.message.bytes=1,011,023"):
        check_event_limit(limit, {"events.raw": needed - 1})


def test_the_producer_has_room_for_the_largest_event_accepted() -> None:
    assert producer_config("k:9092", 5.0)["message.max.bytes"] == 1_000_000  # librdkafka's default
    assert producer_config("k:9092", 5.0, 900_000)["message.max.bytes"] == 1_000_000
    assert producer_config("k:9092", 5.0, 5_000_000)["message.max.bytes"] == 5_000_000 + record_overhead(5_000_000)
