"""The ingest service's start-up check: every event it may accept (and every dead letter it writes) fits the
`max.message.bytes` of the topic it goes to, so a size refusal is always the service's own reason, never a
broker error answered as 503."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from lakepulse.settings import Settings

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 5.0


def record_overhead(max_event_bytes: int) -> int:
    """Bytes a record batch of one event may need beyond the event: batch and record framing, the key (a
    tenant id of at most 64 bytes), and LZ4's worst-case growth of incompressible data (under 0.5 %)."""
    return 1024 + max_event_bytes // 100


class TopicLimitError(RuntimeError):
    """`ingest_max_event_bytes` allows events a topic would refuse; the service must not start."""


def check_event_limit(max_event_bytes: int, topic_limits: Mapping[str, int]) -> None:
    """Raise TopicLimitError naming every topic whose `max.message.bytes` cannot hold an event (or a dead
    letter) of `max_event_bytes` plus its record overhead."""
    needed = max_event_bytes + record_overhead(max_event_bytes)
    short = {topic: limit for topic, limit in sorted(topic_limits.items()) if limit < needed}
    if short:
        topics = ", ".join(f"{topic} max.message.bytes={limit:,}" for topic, limit in short.items())
        raise TopicLimitError(
            f"LAKEPULSE_INGEST_MAX_EVENT_BYTES={max_event_bytes:,} allows events that Kafka would refuse ({topics}; "
            f"an event of that size needs {needed:,} bytes with its record overhead): lower the setting or raise "
            "the topics' max.message.bytes"
        )


def topic_message_limits(bootstrap: str, topics: list[str], timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, int]:
    """The effective `max.message.bytes` of each of `topics` that exists (absent topics are left out); raises
    KafkaException when the cluster does not answer within `timeout_s`."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout_s * 1000)})
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in topics]
    limits: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout_s).items():
        try:
            configs = future.result(timeout=timeout_s + 1)
        except KafkaException as error:
            if error.args and error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            raise
        limits[resource.name] = int(configs["max.message.bytes"].value)
    return limits


def verify_topic_limits(settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, int]:
    """At start-up: refuse (TopicLimitError) when `ingest_max_event_bytes` exceeds what the raw or the DLQ
    topic takes. A cluster that does not answer, or a topic not created yet, is logged and not checked: the
    service starts (and answers 503 while Kafka is away), as it would without the check. Returns the limits read."""
    topics = [settings.topic_events_raw, settings.topic_events_dlq]
    try:
        limits = topic_message_limits(settings.kafka_bootstrap, topics, timeout_s)
    except (KafkaException, TimeoutError) as error:
        log.warning("could not read max.message.bytes of %s (%s); the event size limit is not checked", topics, error)
        return {}
    for topic in sorted(set(topics) - set(limits)):
        log.warning("topic %s does not exist yet; its max.message.bytes is not checked", topic)
    check_event_limit(settings.ingest_max_event_bytes, limits)
    return limits
