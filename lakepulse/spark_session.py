"""One way to build a SparkSession for lakepulse jobs: provisioned jars, Delta, s3a on the configured S3."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from pyspark.sql import SparkSession

from lakepulse.platform.components.spark import JVM_CONF, spark_jars
from lakepulse.settings import Settings, get_settings

log = logging.getLogger("lakepulse.spark")


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Hadoop s3a settings for the configured S3 endpoint (MinIO locally: path-style, plain HTTP)."""
    return {
        "spark.hadoop.fs.s3a.endpoint": settings.s3_endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": settings.s3_region,
        "spark.hadoop.fs.s3a.access.key": settings.s3_access_key,
        "spark.hadoop.fs.s3a.secret.key": settings.s3_secret_key,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(settings.s3_endpoint.startswith("https")).lower(),
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }


# In local mode the executor is the driver's own JVM, so a missed heartbeat means the JVM got no CPU (the niced
# streaming JVM on a busy host once went 133 s without one), not that anything died. After 120 s Spark would
# remove its only executor, and the streaming queries stall on the failed re-registration.
LOCAL_HEARTBEAT_TIMEOUT_MS = 24 * 3600 * 1000


def local_mode_conf(master: str) -> dict[str, str]:
    """What a `local[...]` master needs on a busy host: never expire the in-process executor."""
    if not master.startswith("local"):
        return {}
    return {"spark.storage.blockManagerHeartbeatTimeoutMs": str(LOCAL_HEARTBEAT_TIMEOUT_MS)}


def build_spark(
    app_name: str, settings: Settings | None = None, *, jvm_ignores_sigterm: bool = False, **extra_conf: str
) -> SparkSession:
    """A SparkSession on `settings.spark_master` with Kafka, Delta and s3a available (jars from the cache).

    `jvm_ignores_sigterm`: for a long-running job that stops itself on SIGTERM (then `stop_spark`). A group
    SIGTERM (supervisor, tests) otherwise reaches the JVM too, and its shutdown hooks race the job's own stop:
    py4j calls fail mid-stop and the hooks can hang, leaving the JVM behind. A JVM started with SIGTERM
    ignored installs no handler for it."""
    settings = settings or get_settings()
    jars = spark_jars(settings.cache_dir)
    if not jars:
        raise RuntimeError("Spark jars are not provisioned: run `lakepulse provision --only spark`")
    # Executors must run the same interpreter (and so the same pyspark) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.jars", ",".join(str(j) for j in jars))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", settings.bind_host)
        .config("spark.driver.host", settings.bind_host)
    )
    for key, value in {**s3a_conf(settings), **JVM_CONF, **local_mode_conf(settings.spark_master),
                       **extra_conf}.items():
        builder = builder.config(key, value)
    if not jvm_ignores_sigterm:
        return builder.getOrCreate()
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the JVM PySpark starts
    try:
        return builder.getOrCreate()
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_spark(spark: SparkSession, timeout_s: float = 20.0) -> None:
    """Stop the session, then end its JVM: ask it to exit, and kill it if it has not within `timeout_s`.

    PySpark's JVM exits when its stdin (a pipe from this process) closes, after its shutdown hooks. Were
    those to hang, the JVM would outlive this process (reparented to init, holding its memory and threads)."""
    jvm = getattr(spark.sparkContext._gateway, "proc", None)  # None when started by spark-submit
    try:
        spark.stop()
    finally:
        if jvm is not None:
            if jvm.stdin is not None:
                jvm.stdin.close()
            try:
                jvm.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("Spark JVM %d still running %.0f s after stop: killing it", jvm.pid, timeout_s)
                jvm.kill()
                jvm.wait()
