"""The jars Spark jobs need beside pyspark: Kafka source/sink, Delta Lake and s3a (no server of its own).

They are copied into one directory and handed to Spark as `spark.jars`, so Spark never resolves
packages at run time (which would need the network).
"""

from __future__ import annotations

import re
from pathlib import Path

from lakepulse.platform.components.base import Component, Context
from lakepulse.platform.maven import Dependency, copy_dependencies
from lakepulse.platform.versions import pin

# Spark compiles a query stage into one Java method; with many metrics that method passes HotSpot's 8 KB
# limit and would stay interpreted (about half the speed of the minute aggregation), unless allowed.
_JVM_OPTIONS = "-XX:-DontCompileHugeMethods"
# Every Spark JVM lakepulse starts (jobs, spark-submit, streaming) gets these.
JVM_CONF = {"spark.driver.extraJavaOptions": _JVM_OPTIONS, "spark.executor.extraJavaOptions": _JVM_OPTIONS}


JAR_VERSION = re.compile(r"-\d[\w.+-]*\.jar$")


def artifact_name(jar: Path) -> str:
    """`jackson-core-2.13.5.jar` -> `jackson-core`."""
    return JAR_VERSION.sub("", jar.name)


def drop_jars_pyspark_ships(jars_dir: Path) -> list[str]:
    """Remove jars whose artifact pyspark already bundles: a second version on the classpath breaks Spark."""
    import pyspark

    shipped = {artifact_name(j) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    dropped = [j.name for j in jars_dir.glob("*.jar") if artifact_name(j) in shipped]
    for name in dropped:
        (jars_dir / name).unlink()
    return dropped


def spark_dependencies() -> list[Dependency]:
    """Kafka connector, Delta and s3a for the pinned Spark/Scala versions."""
    p = pin("spark")
    scala, spark = p["scala"], p["version"]
    common = ["org.apache.hadoop:hadoop-client-api", "org.apache.hadoop:hadoop-client-runtime",
              "org.slf4j:slf4j-api", "org.scala-lang:scala-library", "org.scala-lang:scala-reflect"]
    return [
        Dependency(f"org.apache.spark:spark-sql-kafka-0-10_{scala}:{spark}", exclusions=common),
        Dependency(f"io.delta:delta-spark_4.2_{scala}:{p['delta']}", exclusions=[*common,
                   "org.apache.spark:*"]),
        Dependency(f"org.apache.hadoop:hadoop-aws:{p['hadoop']}", exclusions=[*common,
                   "software.amazon.awssdk:bundle"]),
        Dependency(f"software.amazon.awssdk:bundle:{p['aws_sdk_bundle']}", exclusions=["*:*"]),
    ]


class Spark(Component):
    name = "spark"

    def provision(self, ctx: Context) -> None:
        deps = spark_dependencies()
        if ctx.is_provisioned(self.name, extra=repr(deps)):
            return
        home = ctx.reset(self.name)
        copy_dependencies("spark", deps, home / "jars", ctx.cache / "mvn-work" / "spark",
                          ctx.provision_log(self.name))
        drop_jars_pyspark_ships(home / "jars")
        ctx.mark_provisioned(self.name, extra=repr(deps))


def spark_jars(ctx_or_cache: Context | Path) -> list[Path]:
    """Every provisioned jar for `spark.jars`."""
    cache = ctx_or_cache.cache if isinstance(ctx_or_cache, Context) else ctx_or_cache
    return sorted((cache / "spark" / "jars").glob("*.jar"))
