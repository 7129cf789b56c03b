"""Kafka (KRaft, one node) and a Kafka Connect distributed worker, from Maven Central jars."""

from __future__ import annotations

import subprocess
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from lakepulse.platform.components.base import (
    Component,
    Context,
    Service,
    http_ok,
    write_properties,
)
from lakepulse.platform.java import find_java_home
from lakepulse.platform.maven import Dependency, copy_dependencies
from lakepulse.platform.versions import pin

CLUSTER_ID = "bGFrZXB1bHNlLWxvY2FsMQ"  # fixed, so a reformat after `down --purge` is reproducible

LOG4J2 = """\
Configuration:
  name: lakepulse
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.clients
        level: WARN
      - name: kafka.log
        level: WARN
"""


def kafka_dependencies() -> list[Dependency]:
    """The broker, Connect runtime and a log4j2 backend (the published POMs leave logging out;
    Kafka 4.1 declares slf4j-api 1.7, so the SLF4J 1.x binding)."""
    v, log4j = pin("kafka")["version"], pin("kafka")["log4j"]
    return [
        Dependency(f"org.apache.kafka:kafka_2.13:{v}"),
        Dependency(f"org.apache.kafka:kafka-tools:{v}"),
        Dependency(f"org.apache.kafka:connect-runtime:{v}"),
        Dependency(f"org.apache.kafka:connect-json:{v}"),
        Dependency(f"org.apache.logging.log4j:log4j-core:{log4j}"),
        Dependency(f"org.apache.logging.log4j:log4j-slf4j-impl:{log4j}"),
        Dependency(f"org.apache.logging.log4j:log4j-1.2-api:{log4j}"),
        Dependency("com.fasterxml.jackson.dataformat:jackson-dataformat-yaml:2.17.2"),
    ]


def admin(bootstrap: str) -> AdminClient:
    """A Kafka admin client for the configured bootstrap servers."""
    # log_level 0: while the broker is still starting, librdkafka would print every refused connection.
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 0})


def kafka_answers(bootstrap: str) -> bool:
    """True when the broker returns cluster metadata."""
    try:
        return len(admin(bootstrap).list_topics(timeout=3).brokers) > 0
    except KafkaException:
        return False


class Kafka(Component):
    """The broker (with its KRaft controller in the same process) and the Connect worker."""

    name = "kafka"
    # Creating topics needs only the broker: `up --only kafka` (without Connect) must still create them, or
    # Pinot's bootstrap fails on tables whose topic does not exist.
    bootstrap_needs = ("kafka",)

    def provision(self, ctx: Context) -> None:
        deps = kafka_dependencies()
        if ctx.is_provisioned(self.name, extra=repr(deps)):
            return
        home = ctx.reset(self.name)
        copy_dependencies("kafka", deps, home / "libs", ctx.cache / "mvn-work" / "kafka",
                          ctx.provision_log(self.name))
        ctx.mark_provisioned(self.name, extra=repr(deps))

    def _java(self) -> str:
        return str(find_java_home(17) / "bin" / "java")

    def _jvm(self, ctx: Context, heap: str, log_name: str) -> list[str]:
        log4j = ctx.conf(self.name) / "log4j2.yaml"
        log4j.write_text(LOG4J2)
        return [
            self._java(), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={ctx.logs}",
            "-cp", f"{ctx.home(self.name) / 'libs'}/*",
        ]

    def _server_properties(self, ctx: Context) -> Path:
        s = ctx.settings
        host, port = s.kafka_bootstrap.split(",")[0].rsplit(":", 1)
        return write_properties(ctx.conf(self.name) / "server.properties", {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{host}:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": ctx.data(self.name) / "log",
            "num.partitions": 3,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "log.retention.hours": 168,
            "auto.create.topics.enable": "false",
            "message.max.bytes": 10485760,
        })

    def _format_storage(self, ctx: Context, server_properties: Path) -> None:
        # KRaft storage must be formatted once before the first start.
        if (ctx.data(self.name) / "log" / "meta.properties").exists():
            return
        out = subprocess.run(
            [*self._jvm(ctx, "256m", "storage"), "kafka.tools.StorageTool", "format",
             "-t", CLUSTER_ID, "-c", str(server_properties), "--ignore-formatted"],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage failed:\n{out.stdout}\n{out.stderr}")

    def _worker_properties(self, ctx: Context) -> Path:
        s = ctx.settings
        plugins = ctx.cache / "connect-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        return write_properties(ctx.conf(self.name) / "connect-worker.properties", {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": "lakepulse-connect",
            "listeners": f"http://{s.bind_host}:{s.port_of(s.kafka_connect_url)}",
            "rest.advertised.host.name": s.bind_host,
            "config.storage.topic": "_connect-configs",
            "offset.storage.topic": "_connect-offsets",
            "status.storage.topic": "_connect-status",
            "config.storage.replication.factor": 1,
            "offset.storage.replication.factor": 1,
            "status.storage.replication.factor": 1,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
            "offset.flush.interval.ms": 10000,
            "plugin.path": plugins,
            "plugin.discovery": "hybrid_warn",
        })

    def prepare(self, ctx: Context) -> None:
        self._format_storage(ctx, self._server_properties(ctx))

    def plugins_fingerprint(self, ctx: Context) -> str:
        """What is installed in plugin.path: part of Connect's environment, so a rebuilt plugin restarts it."""
        markers = sorted((ctx.cache / "connect-plugins").glob("*/.provisioned"))
        return ",".join(f"{m.parent.name}:{m.read_text().strip()}" for m in markers)

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        server_properties = self._server_properties(ctx)
        worker = self._worker_properties(ctx)
        return [
            Service(
                name="kafka",
                command=[*self._jvm(ctx, "1g", "kafka"), "kafka.Kafka", str(server_properties)],
                ready=lambda: kafka_answers(s.kafka_bootstrap),
                url=f"kafka://{s.kafka_bootstrap}",
                order=10,
                stop_wait=60,
            ),
            Service(
                name="connect",
                command=[*self._jvm(ctx, "1g", "connect"),
                         "org.apache.kafka.connect.cli.ConnectDistributed", str(worker)],
                # Connect scans plugin.path only at start: supervisor restarts it when this changes.
                env={"LAKEPULSE_CONNECT_PLUGINS": self.plugins_fingerprint(ctx)},
                ready=lambda: http_ok(f"{s.kafka_connect_url}/connectors"),
                url=s.kafka_connect_url,
                order=20,
                start_timeout=240,
            ),
        ]

    def topics(self, ctx: Context) -> list[NewTopic]:
        """Every topic lakepulse uses; keyed topics feeding Pinot upserts keep all partitions of a key."""
        s = ctx.settings
        many = s.events_raw_partitions
        return [
            NewTopic(s.topic_events_raw, many, 1, config={"retention.ms": str(7 * 86400_000)}),
            NewTopic(s.topic_events_dlq, 3, 1, config={"retention.ms": str(30 * 86400_000)}),
            NewTopic(s.topic_events_late, 3, 1),
            NewTopic(s.topic_metrics_minute, many, 1),
            NewTopic(s.topic_prep_events, many, 1),
            NewTopic(s.topic_orders_live, many, 1),
            NewTopic(s.topic_couriers_live, many, 1),
            NewTopic(s.topic_alerts, 1, 1),
        ]

    def bootstrap(self, ctx: Context) -> None:
        client = admin(ctx.settings.kafka_bootstrap)
        existing = set(client.list_topics(timeout=10).topics)
        wanted = [t for t in self.topics(ctx) if t.topic not in existing]
        if not wanted:
            return
        for topic, future in client.create_topics(wanted, operation_timeout=30).items():
            try:
                future.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise RuntimeError(f"creating topic {topic} failed: {exc}") from exc

    def status(self, ctx: Context) -> dict[str, str]:
        try:
            topics = admin(ctx.settings.kafka_bootstrap).list_topics(timeout=3).topics
        except KafkaException:
            return {}
        return {"topics": str(len([t for t in topics if not t.startswith("_")]))}
