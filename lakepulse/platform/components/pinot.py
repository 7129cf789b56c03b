"""Apache Pinot (ZooKeeper + controller, broker and server in one JVM), from Maven Central jars.

Maven Central (as reachable here) has no complete Pinot 1.x: `pinot-tools` and `pinot-server` stop
at 0.11.0, `pinot-kafka-3.0` is not published, and there is no `pinot-distribution` or `pinot-all`.
0.11.0 is the newest line whose whole runtime closure resolves, so that is what versions.toml pins.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx

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

CLUSTER_NAME = "lakepulse"
PINOT_HEAP = "3g"  # controller + broker + server share one JVM (idle RSS is about 0.6 GB)
ZK_HEAP = "256m"

# Everything Pinot needs on one flat classpath. pinot-tools brings controller/broker/server, the
# Kafka consumer, JSON decoder and S3 filesystem plugins; what is left out is either absent from
# Central (Confluent, pinot-orc 0.11.0), unused (Kinesis/Pulsar) or a second logging backend.
EXCLUSIONS = (
    "org.apache.pinot:pinot-confluent-avro",
    "org.apache.pinot:pinot-confluent-protobuf",
    "org.apache.pinot:pinot-confluent-json",
    "io.confluent:*",
    "org.apache.pinot:pinot-orc",
    "org.apache.pinot:pinot-kinesis",
    "org.apache.pinot:pinot-pulsar",
    "org.slf4j:slf4j-log4j12",
    "org.slf4j:slf4j-reload4j",
    "log4j:log4j",
)

# The Kafka consumer plugin differs by Pinot line: 0.x ships the Kafka 2.x client, 1.x the 3.x one.
KAFKA_CONSUMER_FACTORY = {
    "0": "org.apache.pinot.plugin.stream.kafka20.KafkaConsumerFactory",
    "1": "org.apache.pinot.plugin.stream.kafka30.KafkaConsumerFactory",
}
KNOWN_CONSUMER_FACTORIES = set(KAFKA_CONSUMER_FACTORY.values())

ADD_OPENS = [
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in ("java.nio", "sun.nio.ch", "java.lang", "java.util", "java.lang.reflect",
                "jdk.internal.misc", "jdk.internal.ref", "java.io", "java.util.concurrent")
]

LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="console" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{yyyy-MM-dd HH:mm:ss.SSS} %p [%c{1}] [%t] %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <!-- Helix and ZooKeeper log every state transition and session event at INFO. -->
    <Logger name="org.apache.helix" level="warn"/>
    <Logger name="org.apache.zookeeper" level="warn"/>
    <Logger name="org.I0Itec.zkclient" level="warn"/>
    <!-- The Kafka consumer warns about every Pinot stream property it is handed, on every consumer. -->
    <Logger name="org.apache.kafka" level="error"/>
    <Logger name="org.apache.hadoop" level="warn"/>
    <Logger name="org.reflections" level="error"/>
    <Root level="info"><AppenderRef ref="console"/></Root>
  </Loggers>
</Configuration>
"""


def pinot_version() -> str:
    """The pinned Pinot version."""
    return str(pin("pinot")["version"])


def pinot_dependencies() -> list[Dependency]:
    """What provisioning resolves from Maven Central."""
    return [Dependency(f"org.apache.pinot:pinot-tools:{pinot_version()}", EXCLUSIONS)]


def consumer_factory() -> str:
    """The Kafka consumer factory class of the provisioned Pinot line."""
    return KAFKA_CONSUMER_FACTORY[pinot_version().split(".")[0]]


def zk_answers(host: str, port: int) -> bool:
    """True when ZooKeeper answers the `ruok` four-letter command."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(b"ruok")
            return sock.recv(16) == b"imok"
    except OSError:
        return False


def broker_sql(broker_url: str, sql: str) -> dict[str, Any]:
    """The broker's JSON answer to a SQL query."""
    response = httpx.post(f"{broker_url}/query/sql", json={"sql": sql}, timeout=10)
    response.raise_for_status()
    return response.json()


def adapt_configs(
    schema: dict[str, Any], table: dict[str, Any], bootstrap_servers: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit pinot_tables/ configs (written for Pinot 1.x) to the provisioned Pinot and our endpoints.

    The Kafka broker list is an endpoint (it comes from settings); the consumer factory is a
    property of the installed Pinot, not of the table. Pinot 0.x differs from 1.x where it matters
    here: the consumer type is mandatory (1.x only has `lowlevel`); realtime replication is
    `replicasPerPartition` (1.x reads `replication`); upserts compare on one `comparisonColumn`
    instead of `comparisonColumns`; null handling is per table (`nullHandlingEnabled`), not per
    column; and there are no `notNull` constraints.
    """
    schema, table = json.loads(json.dumps(schema)), json.loads(json.dumps(table))  # deep copies
    legacy = pinot_version().startswith("0.")
    stream_maps: list[dict[str, str]] = []
    if isinstance(table.get("tableIndexConfig", {}).get("streamConfigs"), dict):
        stream_maps.append(table["tableIndexConfig"]["streamConfigs"])
    ingestion = table.get("ingestionConfig", {}).get("streamIngestionConfig", {})
    stream_maps += ingestion.get("streamConfigMaps", [])
    for stream in stream_maps:
        if stream.get("streamType", "kafka") != "kafka":
            continue
        stream["stream.kafka.broker.list"] = bootstrap_servers
        factory_key = "stream.kafka.consumer.factory.class.name"
        if stream.get(factory_key, consumer_factory()) in KNOWN_CONSUMER_FACTORIES:
            stream[factory_key] = consumer_factory()
        if legacy:
            stream.setdefault("stream.kafka.consumer.type", "lowlevel")
    if not legacy:
        return schema, table
    segments = table.get("segmentsConfig", {})
    if table.get("tableType", "").upper() == "REALTIME" and "replication" in segments:
        segments.setdefault("replicasPerPartition", segments["replication"])
    upsert = table.get("upsertConfig")
    if upsert and "comparisonColumns" in upsert:
        columns = upsert.pop("comparisonColumns")
        if len(columns) != 1:
            raise ValueError(f"Pinot {pinot_version()} upserts compare on one column, not {columns}")
        upsert["comparisonColumn"] = columns[0]
    if schema.pop("enableColumnBasedNullHandling", False):
        table.setdefault("tableIndexConfig", {})["nullHandlingEnabled"] = True
    for kind in ("dimensionFieldSpecs", "metricFieldSpecs", "dateTimeFieldSpecs"):
        for spec in schema.get(kind, []):
            spec.pop("notNull", None)
    return schema, table


class PinotError(RuntimeError):
    """The controller refused a schema or table config."""


class Pinot(Component):
    """ZooKeeper, then one StartServiceManager JVM running the controller, broker and server."""

    name = "pinot"

    def provision(self, ctx: Context) -> None:
        deps = pinot_dependencies()
        if ctx.is_provisioned(self.name, extra=repr(deps)):
            return
        home = ctx.reset(self.name)
        copy_dependencies("pinot", deps, home / "lib", ctx.cache / "mvn-work" / "pinot",
                          ctx.provision_log(self.name))
        ctx.mark_provisioned(self.name, extra=repr(deps))

    def _jvm(self, ctx: Context, heap: str, initial_heap: str = "256m") -> list[str]:
        conf, data = ctx.conf(self.name), ctx.data(self.name)
        log4j = conf / "log4j2.xml"
        log4j.write_text(LOG4J2)
        tmp = data / "tmp"  # Pinot writes pid files and scratch data to java.io.tmpdir
        tmp.mkdir(exist_ok=True)
        return [
            # A small initial heap: the machine is shared, so Pinot takes memory as it needs it.
            str(find_java_home(17) / "bin" / "java"), f"-Xms{initial_heap}", f"-Xmx{heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=200", "-XX:+ExitOnOutOfMemoryError",
            *ADD_OPENS, "-Dio.netty.tryReflectionSetAccessible=true",
            "-Djava.net.preferIPv4Stack=true", "-Djava.awt.headless=true",
            f"-Djava.io.tmpdir={tmp}", f"-Dlog4j2.configurationFile={log4j}",
            "-Dpinot.admin.system.exit=true",  # a failed start exits instead of idling
            "-cp", f"{ctx.home(self.name) / 'lib'}/*",
        ]

    def _zoo_cfg(self, ctx: Context) -> Path:
        # Run ZooKeeper itself rather than `PinotAdministrator StartZookeeper`: that one listens on all
        # interfaces, never purges old snapshots, and starts the 8080 admin server (Airflow's port).
        path = ctx.conf(self.name) / "zoo.cfg"
        write_properties(path, {
            "dataDir": ctx.data(self.name) / "zookeeper",
            "clientPort": ctx.settings.pinot_zk_port,
            "clientPortAddress": ctx.settings.bind_host,
            "tickTime": 2000,
            "maxClientCnxns": 0,
            "admin.enableServer": "false",
            "4lw.commands.whitelist": "ruok,srvr,mntr",
            "autopurge.snapRetainCount": 3,
            "autopurge.purgeInterval": 1,
        })
        return path

    def _role_configs(self, ctx: Context) -> list[Path]:
        # Each listener gets an explicit host: the plain `*.port` keys make Pinot bind 0.0.0.0, and
        # the hostnames make Helix instance ids 127.0.0.1_<port> instead of the machine's address.
        s, conf, data = ctx.settings, ctx.conf(self.name), ctx.data(self.name)
        host, zk = s.bind_host, f"{s.bind_host}:{s.pinot_zk_port}"
        controller_port, broker_port = s.port_of(s.pinot_controller_url), s.port_of(s.pinot_broker_url)
        common = {"pinot.cluster.name": CLUSTER_NAME, "pinot.zk.server": zk}
        controller = write_properties(conf / "controller.conf", {
            "pinot.service.role": "CONTROLLER", **common,
            "controller.helix.cluster.name": CLUSTER_NAME,
            "controller.zk.str": zk,
            "controller.host": host,
            "controller.access.protocols": "http",
            "controller.access.protocols.http.host": host,
            "controller.access.protocols.http.port": controller_port,
            "controller.vip.host": host,
            "controller.vip.port": controller_port,
            "controller.data.dir": data / "controller" / "segments",
            "controller.local.temp.dir": data / "controller" / "tmp",
            "controller.mode": "DUAL",
            "cluster.tenant.isolation.enable": "true",
        })
        broker = write_properties(conf / "broker.conf", {
            "pinot.service.role": "BROKER", **common,
            "pinot.broker.hostname": host,
            "pinot.broker.client.access.protocols": "http",
            "pinot.broker.client.access.protocols.http.host": host,
            "pinot.broker.client.access.protocols.http.port": broker_port,
            # No load balancer drains this broker: skip the 10 s wait for in-flight queries on stop.
            "pinot.broker.delayShutdownTimeMs": 0,
        })
        server = write_properties(conf / "server.conf", {
            "pinot.service.role": "SERVER", **common,
            # Pinot 0.11 binds the netty query port on all interfaces (no host setting exists); the
            # advertised host is ours. gRPC (also all interfaces) stays off: Trino queries the broker
            # only (pinot.forbid-segment-queries), so nothing needs it.
            "pinot.server.netty.host": host,
            "pinot.server.netty.port": s.pinot_server_port,
            "pinot.server.grpc.enable": "false",
            "pinot.server.adminapi.access.protocols": "http",
            "pinot.server.adminapi.access.protocols.http.host": host,
            "pinot.server.adminapi.access.protocols.http.port": s.pinot_server_admin_port,
            "pinot.server.instance.dataDir": data / "server" / "index",
            "pinot.server.instance.segmentTarDir": data / "server" / "segmentTar",
            "pinot.server.instance.readMode": "mmap",
            # Consuming segments live in memory-mapped files, not on the (shared) heap.
            "pinot.server.instance.realtime.alloc.offheap": "true",
            "pinot.server.instance.realtime.alloc.offheap.direct": "false",
        })
        return [controller, broker, server]

    def _ready(self, ctx: Context) -> bool:
        """Controller, broker and server answer /health, the server is registered, and the broker
        answers SQL on every existing table (after a restart segments take a while to come online)."""
        s = ctx.settings
        if not (http_ok(f"{s.pinot_controller_url}/health") and http_ok(f"{s.pinot_broker_url}/health")
                and http_ok(f"http://{s.bind_host}:{s.pinot_server_admin_port}/health")):
            return False
        try:
            instances = httpx.get(f"{s.pinot_controller_url}/instances", timeout=3).json()["instances"]
            if f"Server_{s.bind_host}_{s.pinot_server_port}" not in instances:
                return False
            tables = httpx.get(f"{s.pinot_controller_url}/tables", timeout=3).json()["tables"]
            return all(not broker_sql(s.pinot_broker_url, f"SELECT COUNT(*) FROM {t}").get("exceptions")
                       for t in tables)
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        zk_cfg = self._zoo_cfg(ctx)
        roles = self._role_configs(ctx)
        return [
            Service(
                name="pinot-zookeeper",
                # QuorumPeerMain with one server runs standalone and, unlike ZooKeeperServerMain, autopurges.
                command=[*self._jvm(ctx, ZK_HEAP), "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                         str(zk_cfg)],
                ready=lambda: zk_answers(s.bind_host, s.pinot_zk_port),
                url=f"zk://{s.bind_host}:{s.pinot_zk_port}",
                directory=ctx.data(self.name),
                order=30,
            ),
            Service(
                name="pinot",
                command=[
                    *self._jvm(ctx, PINOT_HEAP, "1g"), "org.apache.pinot.tools.admin.PinotAdministrator",
                    "StartServiceManager", "-zkAddress", f"{s.bind_host}:{s.pinot_zk_port}",
                    "-clusterName", CLUSTER_NAME, "-port", "-1",
                    "-bootstrapConfigPaths", *map(str, roles),
                ],
                ready=lambda: self._ready(ctx),
                url=s.pinot_controller_url,
                directory=ctx.data(self.name),
                order=40,
                start_timeout=300,
                # The server stops consuming segments one by one, each waiting out its Kafka fetch
                # (up to 5 s): 18 partitions across the three tables took 61 s.
                stop_wait=180,
            ),
        ]

    def bootstrap(self, ctx: Context) -> None:
        """Create or update every schema and table under pinot_tables/<table>/."""
        controller = ctx.settings.pinot_controller_url
        with httpx.Client(base_url=controller, timeout=60) as client:
            for table_dir in sorted(p for p in (ctx.repo / "pinot_tables").glob("*") if p.is_dir()):
                schema_file, table_file = table_dir / "schema.json", table_dir / "table.json"
                if not (schema_file.exists() and table_file.exists()):
                    continue
                raw = json.loads(schema_file.read_text()), json.loads(table_file.read_text())
                schema, table = adapt_configs(*raw, ctx.settings.kafka_bootstrap)
                _check(client.post("/schemas", params={"override": "true"}, json=schema), schema_file)
                name, kind = table["tableName"], table["tableType"].upper()
                existing = client.get(f"/tables/{name}", params={"type": kind.lower()})
                if existing.is_success and existing.json().get(kind):
                    _same_stream_source(existing.json()[kind], table, table_file)
                    _check(client.put(f"/tables/{name}", json=table), table_file)
                else:
                    _check(client.post("/tables", json=table), table_file)

    def status(self, ctx: Context) -> dict[str, str]:
        controller = ctx.settings.pinot_controller_url
        try:
            tables = httpx.get(f"{controller}/tables", timeout=5).json()["tables"]
            facts = {"tables": str(len(tables))}
            for table in tables:
                view = httpx.get(f"{controller}/tables/{table}/externalview", timeout=5).json()
                states: dict[str, int] = {}
                for kind in ("OFFLINE", "REALTIME"):
                    for replicas in (view.get(kind) or {}).values():
                        for state in replicas.values():
                            states[state] = states.get(state, 0) + 1
                counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
                facts[table] = counts or "no segments"
            return facts
        except (httpx.HTTPError, ValueError, KeyError):
            return {"tables": "controller unreachable"}


def _stream_sources(table: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(broker list, topic) of each Kafka stream a table consumes."""
    maps = (table.get("ingestionConfig") or {}).get("streamIngestionConfig", {}).get("streamConfigMaps") or []
    if isinstance((table.get("tableIndexConfig") or {}).get("streamConfigs"), dict):
        maps = [*maps, table["tableIndexConfig"]["streamConfigs"]]
    return [(m.get("stream.kafka.broker.list"), m.get("stream.kafka.topic.name")) for m in maps]


def _same_stream_source(current: dict[str, Any], wanted: dict[str, Any], source: Path) -> None:
    """Refuse to re-point a realtime table at another Kafka or topic: its consuming segments keep
    reading the old one (with offsets that mean nothing in the new one) until they roll over."""
    if _stream_sources(current) != _stream_sources(wanted):
        raise PinotError(
            f"{source}: table {wanted['tableName']} consumes {_stream_sources(current)}, the config says "
            f"{_stream_sources(wanted)}; drop it (DELETE {{controller}}/tables/{wanted['tableName']}) "
            "so bootstrap re-creates it and it re-reads the topic"
        )


def _check(response: httpx.Response, source: Path) -> None:
    """Raise unless the controller accepted the config whole (ignored keys would change semantics)."""
    if not response.is_success:
        raise PinotError(f"{source}: controller answered {response.status_code}: {response.text}")
    ignored = response.json().get("unrecognizedProperties") or {}
    if ignored:
        raise PinotError(f"{source}: Pinot {pinot_version()} does not know {sorted(ignored)}")
