"""The raw-archive sink: lakepulse's own Kafka Connect connector (connect-plugin/), built into the
worker's plugin.path, and its connector config (infra/connect/raw-archive.json) put to the REST API.

Why a project-owned connector: no S3 *Parquet* sink resolves from Maven Central alone (Confluent's,
Aiven's and Lenses' need other repositories), and Apache Iceberg's sink would make the raw zone an
Iceberg table whose Spark readers need iceberg-spark-runtime for Spark 4.2 — Central has it only up to
Spark 4.0 (1.10.1). Plain Parquet objects are read by pyarrow, Spark and Trino as they are.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from lakepulse.platform.components.base import Component, Context
from lakepulse.platform.maven import MVN_FLAGS, require_maven
from lakepulse.platform.proc import run_logged
from lakepulse.settings import Settings

PLUGIN_NAME = "lakepulse-raw-archive"
CONNECTOR_FILE = Path("infra/connect/raw-archive.json")
PLACEHOLDER = re.compile(r"\$\{settings\.([a-z0-9_]+)\}")
RUNNING_TIMEOUT_S = 60.0


def source_fingerprint(project: Path) -> str:
    """Hash of the connector's sources and POM: a changed file rebuilds the plugin."""
    digest = hashlib.sha256()
    for path in sorted([project / "pom.xml", *(project / "src").rglob("*")]):
        if path.is_file():
            digest.update(str(path.relative_to(project)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def connector_config(repo: Path, settings: Settings, **overrides: str) -> tuple[str, dict[str, str]]:
    """Name and config of the raw-archive connector: the checked-in file with `${settings.x}` filled in."""
    spec = json.loads((repo / CONNECTOR_FILE).read_text())

    def fill(value: str) -> str:
        return PLACEHOLDER.sub(lambda m: str(getattr(settings, m.group(1))), value)

    config = {key: fill(str(value)) for key, value in spec["config"].items()}
    return spec["name"], {**config, **overrides}


def put_connector(connect_url: str, name: str, config: dict[str, str]) -> bool:
    """Create or update a connector idempotently; True when the worker's config changed."""
    with httpx.Client(base_url=connect_url, timeout=30) as http:
        current = http.get(f"/connectors/{name}/config")
        if current.is_success and {k: v for k, v in current.json().items() if k != "name"} == config:
            return False
        response = http.put(f"/connectors/{name}/config", json=config)
        if not response.is_success:
            raise RuntimeError(f"Connect refused connector {name} ({response.status_code}): "
                               f"{response.text[:500]} — if the class is unknown, the worker started before "
                               "the plugin was built: restart the connect service")
        return True


def connector_status(connect_url: str, name: str) -> dict[str, Any] | None:
    """The connector's status document (connector and task states), or None when it does not exist."""
    try:
        response = httpx.get(f"{connect_url}/connectors/{name}/status", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.is_success else None


def states(status: dict[str, Any] | None) -> list[str]:
    """Connector state followed by each task's state."""
    if status is None:
        return []
    return [status["connector"]["state"], *(t["state"] for t in status.get("tasks", []))]


def wait_running(connect_url: str, name: str, timeout: float = RUNNING_TIMEOUT_S) -> None:
    """Wait until the connector and all its tasks run; restart failed tasks once on the way."""
    deadline = time.monotonic() + timeout
    restarted = False
    while time.monotonic() < deadline:
        status = connector_status(connect_url, name)
        seen = states(status)
        if len(seen) > 1 and all(s == "RUNNING" for s in seen):
            return
        if "FAILED" in seen and not restarted:
            httpx.post(f"{connect_url}/connectors/{name}/restart",
                       params={"includeTasks": "true", "onlyFailed": "true"}, timeout=30)
            restarted = True
        time.sleep(1)
    trace = ""
    if status := connector_status(connect_url, name):
        trace = next((t.get("trace", "") for t in status.get("tasks", []) if t.get("trace")), "")
    raise TimeoutError(f"connector {name} not RUNNING after {timeout:.0f}s: {states(status)} {trace[:800]}")


def connect_group(connector: str) -> str:
    """The consumer group a Connect sink connector commits its offsets in (Connect's default naming)."""
    return f"connect-{connector}"


def offset_key(topic: str, partition: int) -> str:
    """A partition as a JSON object key: "topic:partition" (Kafka topic names cannot contain ':')."""
    return f"{topic}:{partition}"


def _committed(consumer: Any, topic: str) -> list[Any]:
    """Every partition of `topic` with the offset the consumer's group committed (negative: none)."""
    from confluent_kafka import KafkaException, TopicPartition

    meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaException(meta.error if meta is not None else f"topic {topic} not found")
    committed = consumer.committed([TopicPartition(topic, p) for p in sorted(meta.partitions)], timeout=5)
    for tp in committed:
        if tp.error is not None:
            raise KafkaException(tp.error)
    return list(committed)


def committed_offsets(bootstrap: str, group: str, topics: Sequence[str]) -> dict[str, int]:
    """Each "topic:partition" of `topics` → the offset `group` committed (0: none); raises KafkaException."""
    from confluent_kafka import Consumer

    # Never subscribes, so it never joins the group: reading its offsets does not disturb its members.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "log_level": 0})
    try:
        return {offset_key(tp.topic, tp.partition): max(tp.offset, 0)
                for topic in topics for tp in _committed(consumer, topic)}
    finally:
        consumer.close()


def archived_offsets(repo: Path, settings: Settings) -> dict[str, int]:
    """The raw archive's snapshot now: "topic:partition" → the offset below which every record is archived."""
    # The sink lets Connect commit an offset only after the records below it are uploaded (preCommit), and a
    # replay starts at the committed offset: the archived rows below these offsets are complete and never change.
    name, config = connector_config(repo, settings)
    topics = [t.strip() for t in config["topics"].split(",") if t.strip()]
    offsets = committed_offsets(settings.kafka_bootstrap, connect_group(name), topics)
    if not offsets:  # an empty mapping would mean "no cutoff" to the jobs
        raise RuntimeError(f"no partitions found for the raw-archive topics {topics}")
    return offsets


def consumer_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Records of `topic` not yet committed by consumer group `group` (None when unknown)."""
    from confluent_kafka import Consumer, KafkaException

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "log_level": 0})
    try:
        lag = 0
        for tp in _committed(consumer, topic):
            low, high = consumer.get_watermark_offsets(tp, timeout=5)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    except KafkaException:
        return None
    finally:
        consumer.close()


class RawSink(Component):
    """Builds the raw-archive connector plugin and registers the connector with the Connect worker."""

    name = "raw-archive"
    bootstrap_needs = ("kafka", "minio", "connect")

    def plugin_dir(self, ctx: Context) -> Path:
        return ctx.cache / "connect-plugins" / PLUGIN_NAME

    def provision(self, ctx: Context) -> None:
        """`mvn package` + runtime dependencies into plugin.path/<plugin>/ (skipped if sources match)."""
        project = ctx.repo / "connect-plugin"
        dest = self.plugin_dir(ctx)
        marker = dest / ".provisioned"
        fingerprint = source_fingerprint(project)
        if marker.exists() and marker.read_text().strip() == fingerprint:
            return
        build = ctx.cache / "mvn-work" / PLUGIN_NAME
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        run_logged(
            [require_maven(), *MVN_FLAGS, "-f", project / "pom.xml", f"-Dlakepulse.build.dir={build}",
             "-DskipTests", "package", "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={staging}"],
            ctx.provision_log(self.name), "building the raw-archive connector",
        )
        for jar in build.glob("*.jar"):
            shutil.copy2(jar, staging / jar.name)
        (staging / ".provisioned").write_text(fingerprint)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)

    def bootstrap(self, ctx: Context) -> None:
        """PUT the connector config (a no-op when unchanged) and wait until its tasks run."""
        name, config = connector_config(ctx.repo, ctx.settings)
        put_connector(ctx.settings.kafka_connect_url, name, config)
        wait_running(ctx.settings.kafka_connect_url, name)

    def status(self, ctx: Context) -> dict[str, str]:
        name, config = connector_config(ctx.repo, ctx.settings)
        seen = states(connector_status(ctx.settings.kafka_connect_url, name))
        if not seen:
            return {name: "absent"}
        lag = consumer_lag(ctx.settings.kafka_bootstrap, connect_group(name), config["topics"])
        tasks = ",".join(seen[1:]) or "no tasks"
        return {name: f"{seen[0]} (tasks {tasks})", "archive_lag": "?" if lag is None else str(lag)}
