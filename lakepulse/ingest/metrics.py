"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from lakepulse.prometheus import exposition

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngestMetrics:
    """Counters and the produce-latency histogram, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "lakepulse_ingest_events_accepted",
            "Events acknowledged by Kafka on the raw topic",
            registry=self.registry,
        )
        self.rejected = Counter(
            "lakepulse_ingest_events_rejected", "Events refused by the event contract", registry=self.registry
        )
        self.dead_lettered = Counter(
            "lakepulse_ingest_events_dead_lettered",
            "Refused events acknowledged on the DLQ topic",
            registry=self.registry,
        )
        self.requests = Counter(
            "lakepulse_ingest_requests", "Ingest requests by HTTP status", ["status"], registry=self.registry
        )
        self.produce_latency = Histogram(
            "lakepulse_ingest_produce_latency_seconds",
            "Time from producing a request's records to Kafka's acknowledgement of all of them",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type (summed over workers in multiprocess mode)."""
        return exposition(self.registry)
