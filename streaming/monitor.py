"""Prometheus metrics and readiness of the streaming job, served on one local port (/metrics, /healthz)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PREFIX = "lakepulse_streaming"


def _offsets(value: Any) -> dict[str, dict[str, int]]:
    return (json.loads(value) if isinstance(value, str) else value) or {}


def offsets_behind(progress: dict[str, Any], log_end: Callable[[str, int], int | None] | None = None) -> int:
    """Records the query has not read yet, summed over its Kafka sources: the log end now (when
    `log_end(topic, partition)` is given) or else the latest offset the last micro-batch saw, minus the
    offset that micro-batch read up to."""
    behind = 0
    for source in progress.get("sources", []):
        latest, end = _offsets(source.get("latestOffset")), _offsets(source.get("endOffset"))
        for topic, partitions in (latest or end).items():
            for partition, offset in partitions.items():
                now = log_end(topic, int(partition)) if log_end is not None else None
                head = int(offset) if now is None else now
                behind += max(0, head - int(end.get(topic, {}).get(partition, head)))
    return behind


def watermark_epoch(progress: dict[str, Any]) -> float | None:
    """The query's event-time watermark (epoch seconds), None before it has one."""
    text = (progress.get("eventTime") or {}).get("watermark")
    if not text or text.startswith("1970-01-01"):
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Monitor(Collector):
    """Per-query progress (lag, watermark, batch timings), late/DLQ counters and readiness."""

    def __init__(
        self, expected_queries: Iterable[str], bootstrap: str | None = None, max_future_skew_s: float | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        self.bootstrap = bootstrap
        self.max_future_skew_s = max_future_skew_s
        self._consumer: Any = None
        self.expected = set(expected_queries)
        self.lock = threading.Lock()
        self.progress: dict[str, dict[str, Any]] = {}
        self.progress_at: dict[str, float] = {}
        self.idle_at: dict[str, float] = {}
        self.active: set[str] = set()
        self.failed: dict[str, str] = {}
        self.newest_received_at: float | None = None
        self.late = Counter(f"{PREFIX}_late_events", "Events beyond the watermark (also written to the "
                            "late-events topic)", ["tenant_id", "source"], registry=self.registry)
        self.valid = Counter(f"{PREFIX}_events", "Valid events read by the late-events query "
                             "(denominator of the late rate)", registry=self.registry)
        self.dlq = Counter(f"{PREFIX}_dlq_events", "Unplaceable messages sent to the DLQ", ["reason"],
                           registry=self.registry)
        self.registry.register(self)

    # Listener side -------------------------------------------------------------------------------
    def on_progress(self, name: str, progress: dict[str, Any]) -> None:
        """Keep the latest progress of a query."""
        with self.lock:
            self.progress[name] = progress
            self.progress_at[name] = time.time()
            self.active.add(name)

    def on_started(self, name: str) -> None:
        """A query started (or restarted from its checkpoint)."""
        with self.lock:
            self.active.add(name)

    def on_idle(self, name: str) -> None:
        """A trigger found no new data: the query is alive and caught up."""
        with self.lock:
            self.idle_at[name] = time.time()

    def on_terminated(self, name: str, exception: str | None) -> None:
        """A query stopped; readiness fails from now on."""
        with self.lock:
            self.active.discard(name)
            self.failed[name] = exception or "stopped"

    def on_received(self, newest_received_at: float | None) -> None:
        """The newest received_at (epoch s) among events the late-events query has read."""
        if newest_received_at is not None:
            with self.lock:
                if self.newest_received_at is None or newest_received_at > self.newest_received_at:
                    self.newest_received_at = newest_received_at

    def _log_end(self) -> Callable[[str, int], int | None] | None:
        """Log-end offsets read from Kafka once per call site (None without a bootstrap)."""
        if self.bootstrap is None:
            return None
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        if self._consumer is None:
            self._consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "lakepulse-streaming-lag",
                                       "enable.auto.commit": False})
        cache: dict[tuple[str, int], int | None] = {}

        def log_end(topic: str, partition: int) -> int | None:
            if (topic, partition) not in cache:
                try:
                    cache[(topic, partition)] = self._consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=2)[1]
                except KafkaException:
                    cache[(topic, partition)] = None
            return cache[(topic, partition)]

        return log_end

    # Readiness ------------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every expected query runs and has completed a trigger (a micro-batch or an idle one)."""
        log_end = self._log_end()
        with self.lock:
            missing = sorted(self.expected - (self.active & (set(self.progress) | set(self.idle_at))))
            body = {
                "ready": not missing and not self.failed,
                "queries": {n: {"active": n in self.active, "batch": self.progress.get(n, {}).get("batchId")}
                            for n in sorted(self.expected)},
                "failed": self.failed,
                "offsets_behind": sum(offsets_behind(p, log_end) for p in self.progress.values()),
                "freshness_s": None if self.newest_received_at is None
                else round(time.time() - self.newest_received_at, 1),
            }
        return bool(body["ready"]), body

    # Prometheus collector: values computed at scrape time from the latest progress ----------------------
    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        gauges = {
            "offsets_behind": GaugeMetricFamily(f"{PREFIX}_offsets_behind", "Stream lag: Kafka records "
                                                "not yet read by the query", labels=["query"]),
            "batch_age": GaugeMetricFamily(f"{PREFIX}_last_progress_age_seconds", "Seconds since the "
                                           "query last completed a trigger", labels=["query"]),
            "duration": GaugeMetricFamily(f"{PREFIX}_batch_duration_seconds", "Wall time of the last "
                                          "micro-batch", labels=["query"]),
            "rate": GaugeMetricFamily(f"{PREFIX}_processed_rows_per_second", "Rows processed per second "
                                      "in the last micro-batch", labels=["query"]),
            "watermark_delay": GaugeMetricFamily(f"{PREFIX}_watermark_delay_seconds", "Now minus the "
                                                 "query's event-time watermark", labels=["query"]),
            "active": GaugeMetricFamily(f"{PREFIX}_query_active", "1 while the query runs",
                                        labels=["query"]),
            "skew": GaugeMetricFamily(f"{PREFIX}_max_future_skew_seconds", "How far occurred_at may be ahead "
                                      "of processing time; later events reach no watermark (they go to the DLQ)",
                                      labels=["query"]),
        }
        log_end = self._log_end()
        with self.lock:
            for name in sorted(self.expected):
                gauges["active"].add_metric([name], 1.0 if name in self.active else 0.0)
                if self.max_future_skew_s is not None:
                    gauges["skew"].add_metric([name], self.max_future_skew_s)
                progress = self.progress.get(name)
                if progress is None:
                    continue
                gauges["offsets_behind"].add_metric([name], float(offsets_behind(progress, log_end)))
                last = max(self.progress_at[name], self.idle_at.get(name, 0.0))
                gauges["batch_age"].add_metric([name], now - last)
                duration_ms = (progress.get("durationMs") or {}).get("triggerExecution", 0)
                gauges["duration"].add_metric([name], duration_ms / 1000)
                gauges["rate"].add_metric([name], float(progress.get("processedRowsPerSecond") or 0.0))
                watermark = watermark_epoch(progress)
                if watermark is not None:
                    gauges["watermark_delay"].add_metric([name], now - watermark)
            newest = self.newest_received_at
        yield from gauges.values()
        freshness = GaugeMetricFamily(f"{PREFIX}_freshness_seconds", "Now minus the received_at of the "
                                      "newest event read (grows when ingest stops or the job stalls)")
        if newest is not None:
            freshness.add_metric([], now - newest)
        yield freshness

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ProgressListener:
    """Forwards Spark's query events to the Monitor, implementing Spark's Python listener interface over
    py4j itself: one JSON round trip per progress event. PySpark's StreamingQueryListener wrapper
    converts every field of every event with a py4j call each, and its lookups scan the jars for classes:
    measured at 14 % of the minute query's JVM CPU (JFR, 1,000 events/s), on the micro-batch path."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.names: dict[str, str] = {}

    def _name(self, jevent: Any) -> str:
        query_id = jevent.id().toString()
        return self.names.get(query_id, query_id)

    def onQueryStarted(self, jevent: Any) -> None:  # noqa: N802 - Spark's callback names
        query_id = jevent.id().toString()
        self.names[query_id] = jevent.name() or query_id
        self.monitor.on_started(self.names[query_id])

    def onQueryProgress(self, jevent: Any) -> None:  # noqa: N802
        progress = json.loads(jevent.progress().json())
        self.monitor.on_progress(progress.get("name") or str(progress.get("id")), progress)

    def onQueryIdle(self, jevent: Any) -> None:  # noqa: N802
        self.monitor.on_idle(self._name(jevent))

    def onQueryTerminated(self, jevent: Any) -> None:  # noqa: N802
        exception = jevent.exception()
        self.monitor.on_terminated(self._name(jevent), exception.get() if exception.isDefined() else None)

    class Java:
        implements = ["org.apache.spark.sql.streaming.PythonStreamingQueryListener"]


def listen(spark: SparkSession, monitor: Monitor) -> None:
    """Register a ProgressListener for the session's queries."""
    from pyspark.java_gateway import ensure_callback_server_started

    gateway = spark.sparkContext._gateway
    assert gateway is not None, "a classic (py4j) Spark session"
    ensure_callback_server_started(gateway)
    streaming_package = gateway.jvm.org.apache.spark.sql.streaming
    spark._jsparkSession.streams().addListener(
        streaming_package.PythonStreamingQueryListenerWrapper(ProgressListener(monitor))
    )


# (body, HTTP status, content type) of one endpoint, computed per request.
Answer = tuple[bytes, int, str]
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def json_answer(value: Any, status: int = 200) -> Answer:
    return json.dumps(value, indent=1).encode(), status, "application/json"


def serve_endpoints(endpoints: dict[str, Callable[[], Answer]], host: str, port: int) -> ThreadingHTTPServer:
    """Serve GET `endpoints` (path prefix → answer) in a daemon thread; 404 for anything else."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            answer = next((fn for path, fn in endpoints.items() if self.path.startswith(path)), None)
            body, status, kind = answer() if answer is not None else (b"not found\n", 404, "text/plain")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet scrapes
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def serve(monitor: Monitor, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /progress (the last progress of each query)."""

    def progress() -> Answer:
        with monitor.lock:
            return json_answer(monitor.progress)

    def healthz() -> Answer:
        ok, info = monitor.health()
        return json_answer(info, 200 if ok else 503)

    return serve_endpoints(
        {"/metrics": lambda: (monitor.exposition(), 200, PROMETHEUS_TEXT), "/progress": progress, "/healthz": healthz},
        host,
        port,
    )
