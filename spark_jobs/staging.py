"""Write, audit, publish: a run's staged tables, the served tables as the run will leave them, and the publish step.

A run rebuilds a range into its own staging tables (`<lake>/staging/<stage id>/<table>`, Delta, one per served
table it writes): for each served table the staged rows are the *complete new content of the table's scope*
(common.table_scope), so "served outside the scope + staged inside it" is the table as it will be after publishing.
Gold and the quality gate read the tables that way (read_table), before anything is served. Publishing then writes
each served table in one Delta transaction: a MERGE on the table's keys from its staged rows (rows the scope no
longer has are deleted, except in the immutable events table; a scope of events that an older writer served twice is
replaced whole, replaceWhere, with one copy of each).

Concurrency (two runs over one range, e.g. two backfills, or a backfill and the hourly run) is Delta's optimistic
concurrency control, not a lock:
- the stage records the version of every served table it reads (its base); before publishing, `publish` looks at the
  commits since then, and if another writer changed data in the partitions the run read, the staged rows may be
  stale: the run is rebuilt from the tables as they are now (stage + gate again) before it publishes;
- each MERGE reads its scope's partitions, so a concurrent commit between that check and the MERGE makes Delta refuse
  it (ConcurrentAppendException & co.): caught, checked again, rebuilt.
Every row ends up once (a key is only ever merged, never blindly appended) and no run publishes aggregates built
from a superseded state. A lock would need a lease that survives a `kill -9` of its holder (the scheduler drill
kills one mid-run), a store with conditional writes, and every writer to take it (Airflow pools only serialise
single tasks, not stage → gate → publish, and not `python -m spark_jobs.backfill` run by hand); the table format
already has the conflict detection.

A run whose gate fails publishes nothing and keeps its staging tables for inspection (the gate's report names
them); a published run deletes them (keeping a small note of what it published, so a retried publish task is a
no-op); the maintenance DAG deletes stage directories older than STAGING_KEEP.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from spark_jobs.common import (
    EVENTS,
    ORDERS,
    Lake,
    TableSpec,
    TimeRange,
    conflicts,
    merge_rows,
    rebuilt_tables,
    replace_rows,
    table_scope,
    table_version,
)

log = logging.getLogger("lakepulse.batch")

STAGING_KEEP = timedelta(days=7)
# Checks + MERGE rounds; a rebuild takes one. Two overlapping writers need about four; Airflow retries beyond.
PUBLISH_ATTEMPTS = 8
BASE_FILE = "_base.json"
# What a published stage leaves behind (its staged tables are deleted): a retried publish task finds it and is done.
PUBLISHED_FILE = "_published.json"
# Tables whose scope publishing replaces (one replaceWhere) instead of merging, with the counts to report.
REPLACE_FILE = "_replace.json"


@dataclass(frozen=True)
class Stage:
    """One run's staging area for one range: where its staged tables live and which scope each replaces."""

    lake: Lake
    stage_id: str
    rng: TimeRange

    @property
    def root(self) -> str:
        return f"{self.lake.staging_root}/{self.stage_id}"

    def path(self, spec: TableSpec) -> str:
        """Location of the staged copy of a served table's scope."""
        return f"{self.root}/{spec.name}"

    def tables(self) -> tuple[TableSpec, ...]:
        """The served tables a rebuild of this range writes, in publish order."""
        return rebuilt_tables(self.rng)

    def scope(self, spec: TableSpec, alias: str | None = "t") -> str | None:
        """SQL over the served table selecting the rows the staged ones replace."""
        return table_scope(spec, self.rng, alias)


# ---- the Hadoop filesystem of a path (s3a:// or local), through the session's JVM ----

def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path  # type: ignore[union-attr]


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write (replace) a small text file."""
    fs, hadoop_path = _fs(spark, path)
    out = fs.create(hadoop_path, True)
    try:
        out.write(bytearray(text.encode()))
    finally:
        out.close()


def read_text(spark: SparkSession, path: str) -> str | None:
    """A small text file's content, or None when it does not exist."""
    fs, hadoop_path = _fs(spark, path)
    if not fs.exists(hadoop_path):
        return None
    stream = fs.open(hadoop_path)
    try:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def delete_tree(spark: SparkSession, path: str) -> bool:
    """Delete a directory and everything under it (False when there was nothing)."""
    fs, hadoop_path = _fs(spark, path)
    return bool(fs.exists(hadoop_path) and fs.delete(hadoop_path, True))


def exists(spark: SparkSession, path: str) -> bool:
    fs, hadoop_path = _fs(spark, path)
    return bool(fs.exists(hadoop_path))


# ---- staged tables and the served tables as the run will leave them ----

def is_staged(spark: SparkSession, stage: Stage, spec: TableSpec) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, stage.path(spec)))


def write_staged(spark: SparkSession, stage: Stage, spec: TableSpec, rows_df: DataFrame) -> int:
    """Replace the staged copy of `spec` with these rows (a retried step overwrites its own stage); rows written."""
    from delta.tables import DeltaTable

    (rows_df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
     .save(stage.path(spec)))
    last = DeltaTable.forPath(spark, stage.path(spec)).history(1).select("operationMetrics").collect()[0][0]
    return int((last or {}).get("numOutputRows", 0))


def read_table(spark: SparkSession, lake: Lake, spec: TableSpec, stage: Stage | None = None) -> DataFrame:
    """The served table as the run will leave it: staged rows inside the stage's scope, served rows outside it
    (just the served table without a stage, or when `spec` is not staged)."""
    from delta.tables import DeltaTable

    served = lake.path(spec)
    if stage is None or not is_staged(spark, stage, spec):
        return spark.read.format("delta").load(served)
    staged_df = spark.read.format("delta").load(stage.path(spec))
    if not DeltaTable.isDeltaTable(spark, served):  # the first run of a new lake
        return staged_df
    served_df = spark.read.format("delta").load(served)
    scope = stage.scope(spec, None)
    if scope is None:  # orders: matched by key
        outside_df = served_df.join(staged_df.select(*spec.keys), list(spec.keys), "left_anti")
    else:
        outside_df = served_df.where(~F.coalesce(F.expr(scope), F.lit(False)))
    return outside_df.unionByName(staged_df, allowMissingColumns=True)


def mark_replace(spark: SparkSession, stage: Stage, spec: TableSpec, counts: dict[str, int]) -> None:
    """Publish `spec` by replacing its scope with the staged rows (e.g. to drop duplicate keys a MERGE keeps)."""
    marked = replacements(spark, stage)
    marked[spec.name] = counts
    write_text(spark, f"{stage.root}/{REPLACE_FILE}", json.dumps(marked))


def replacements(spark: SparkSession, stage: Stage) -> dict[str, dict[str, int]]:
    """The tables mark_replace named for this stage, with their counts."""
    text = read_text(spark, f"{stage.root}/{REPLACE_FILE}")
    return {} if text is None else dict(json.loads(text))


# ---- the base: what the stage read, so that publishing can tell whether it is still current ----

def record_base(spark: SparkSession, stage: Stage) -> dict[str, int]:
    """Note the current version of every served table (taken before the stage reads them); a fresh stage."""
    delete_tree(spark, f"{stage.root}/{REPLACE_FILE}")
    base = {spec.name: table_version(spark, stage.lake.path(spec)) for spec in stage.tables()}
    write_text(spark, f"{stage.root}/{BASE_FILE}", json.dumps(
        {"base": base, "range": [stage.rng.start.isoformat(), stage.rng.end.isoformat()],
         "metrics": list(stage.rng.metrics), "staged_at": datetime.now(UTC).isoformat()}))
    return base


def read_base(spark: SparkSession, stage: Stage) -> dict[str, int] | None:
    """The versions record_base noted for this stage (None: nothing staged)."""
    text = read_text(spark, f"{stage.root}/{BASE_FILE}")
    return None if text is None else {k: int(v) for k, v in json.loads(text)["base"].items()}


def commit_actions(text: str) -> tuple[str, list[dict[str, Any]]]:
    """One Delta commit file (JSON lines) → its operation and its data-changing add/remove actions."""
    operation, changes = "?", []
    for line in text.splitlines():
        if not line.strip():
            continue
        action = json.loads(line)
        if "commitInfo" in action:
            operation = str(action["commitInfo"].get("operation", "?"))
        for kind in ("add", "remove"):
            if kind in action and action[kind].get("dataChange", True):
                changes.append(action[kind])
    return operation, changes


def touches(changes: Iterable[Mapping[str, Any]], column: str | None, values: Iterable[str]) -> bool:
    """Whether any add/remove action is in one of these partitions (any action, for an unpartitioned table)."""
    wanted = set(values)
    return any(column is None or (c.get("partitionValues") or {}).get(column) in wanted for c in changes)


def changes_since(spark: SparkSession, lake: Lake, base: Mapping[str, int],
                  partitions: Mapping[TableSpec, list[str]]) -> list[str]:
    """Commits after the base that changed data in the partitions the run read (`partitions`: table → values of
    its first partition column), as readable lines; [] when the staged rows are still current."""
    found = []
    for spec, values in partitions.items():
        path = lake.path(spec)
        since, now = base.get(spec.name, -1), table_version(spark, path)
        column = spec.partition_by[0] if spec.partition_by else None
        for version in range(since + 1, now + 1):
            text = read_text(spark, f"{path}/_delta_log/{version:020d}.json")
            if text is None:  # cleaned up already: assume the worst
                found.append(f"{spec.name} v{version}: commit file gone")
                continue
            operation, changes = commit_actions(text)
            if touches(changes, column, values):
                found.append(f"{spec.name} v{version}: {operation}")
    return found


@dataclass
class Published:
    """What publishing did: rows per served table, and how often it had to retry or rebuild."""

    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    attempts: int = 0
    rebuilds: int = 0
    conflicts: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"tables": self.tables, "attempts": self.attempts, "rebuilds": self.rebuilds,
                "conflicts": self.conflicts}


def published_before(spark: SparkSession, stage: Stage) -> Published | None:
    """What an earlier attempt of this stage's publish step published (None: it has not)."""
    text = read_text(spark, f"{stage.root}/{PUBLISHED_FILE}")
    if text is None:
        return None
    report = json.loads(text)
    return Published(report["tables"], 0, report["rebuilds"], report["conflicts"])


def close_stage(spark: SparkSession, stage: Stage, result: Published) -> None:
    """After publishing: drop the staged tables, keep a note of what was published (for a retried task)."""
    write_text(spark, f"{stage.root}/{PUBLISHED_FILE}", json.dumps(result.report()))
    for spec in stage.tables():
        delete_tree(spark, stage.path(spec))


class StaleStageError(RuntimeError):
    """The served tables changed under the stage and there is no way to rebuild it here."""


def publish(spark: SparkSession, stage: Stage, partitions: Mapping[TableSpec, list[str]],
            rebuild: Callable[[], object] | None, attempts: int = PUBLISH_ATTEMPTS) -> Published:
    """Publish every staged table of the stage into its served table, one MERGE (one Delta transaction) each, then
    drop the staged tables (close_stage). When another writer changed the partitions the stage read (`partitions`)
    since its base, call `rebuild` (stage and gate again) first; a commit conflict during the MERGEs leads back to
    that check."""
    result = Published()
    staged = [spec for spec in stage.tables() if is_staged(spark, stage, spec)]
    if not staged:
        # A retry of a publish that completed (the task died before Airflow heard of it) has nothing left to do.
        if (done := published_before(spark, stage)) is not None:
            log.warning("publish %s: published already", stage.stage_id)
            return done
        raise RuntimeError(f"nothing staged at {stage.root}: run the stage steps first")
    while result.attempts < attempts:
        result.attempts += 1
        base = read_base(spark, stage)
        moved = ["no base recorded"] if base is None else changes_since(spark, stage.lake, base, partitions)
        if moved:
            if rebuild is None:
                raise StaleStageError(f"served tables changed since {stage.root} was staged: {moved}")
            log.warning("publish %s: the served tables changed since staging (%s): rebuilding", stage.stage_id,
                        "; ".join(moved))
            rebuild()
            result.rebuilds += 1
            continue
        replace = replacements(spark, stage)
        try:
            for spec in staged:
                scope = stage.scope(spec)
                rows_df = spark.read.format("delta").load(stage.path(spec))
                if spec.name in replace and scope is not None:
                    replace_rows(spark, rows_df, spec, stage.lake.path(spec), stage.scope(spec, None) or "")
                    result.tables[spec.name] = replace[spec.name]
                    continue
                # Events are immutable (insert-only); every other table's scope becomes exactly the staged rows.
                result.tables[spec.name] = merge_rows(spark, rows_df, spec, stage.lake.path(spec), scope=scope,
                                                      delete_missing=spec not in (EVENTS, ORDERS))
        except conflicts() as err:
            first = str(err).splitlines()[0][:300]
            log.warning("publish %s: commit conflict (%s): checking again", stage.stage_id, first)
            result.conflicts.append(first)
            # Our own earlier MERGEs of this attempt now count as changes too: the next check rebuilds from them.
            time.sleep(min(2.0 * result.attempts, 10.0))
            continue
        close_stage(spark, stage, result)
        return result
    raise RuntimeError(f"publish {stage.stage_id}: still conflicting after {attempts} attempts: "
                       f"{result.conflicts[-3:]}")


def purge_stages(spark: SparkSession, lake: Lake, older_than: timedelta = STAGING_KEEP,
                 now: datetime | None = None) -> list[str]:
    """Delete stage directories not modified for `older_than` (gates that failed long ago); returns their ids."""
    fs, hadoop_path = _fs(spark, lake.staging_root)
    if not fs.exists(hadoop_path):
        return []
    cutoff = (now or datetime.now(UTC)) - older_than
    removed = []
    for status in fs.listStatus(hadoop_path):
        if not status.isDirectory():
            continue
        # A directory's own time is not reliable on S3: use the newest file under it.
        newest = 0
        files = fs.listFiles(status.getPath(), True)
        while files.hasNext():
            newest = max(newest, int(files.next().getModificationTime()))
        if datetime.fromtimestamp(newest / 1000, UTC) < cutoff:
            fs.delete(status.getPath(), True)
            removed.append(str(status.getPath().getName()))
    return removed
