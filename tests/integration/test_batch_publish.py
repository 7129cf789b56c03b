"""Write, audit, publish on local Delta tables (a lake under tmp_path, the seam object on the stack's MinIO): a run
stages its range, the quality gate checks the stage, and only then are the served tables written, one MERGE each.

- a failing gate publishes nothing: served tables (versions and rows) and the seam stay as they were, the stage is
  kept for inspection;
- two concurrent backfills of one empty range leave every row once: the second publisher finds the first one's
  commits (before or during its MERGEs, Delta's conflict detection) and rebuilds from them; events served twice
  (what the old blind first-build append left in lakes) are repaired by the next rebuild of their range.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from lakepulse.batch.quality import QualityError
from lakepulse.batch.sample import raw_rows
from lakepulse.batch.seam import read_seam, write_seam
from lakepulse.generator.scenario import GeneratorConfig
from lakepulse.settings import Settings
from spark_jobs import pipeline, publish
from spark_jobs.common import EVENTS, GOLD_TABLES, ORDERS, USER_ACTIVITY, Lake, TimeRange, table_version
from spark_jobs.staging import Published, Stage, is_staged
from tests.integration.test_batch import RECOUNTED, delta_minutes, recount, same, snapshot, write_raw

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
RANGE = TimeRange(START, START + timedelta(minutes=10))
SERVED = (EVENTS, *GOLD_TABLES.values(), USER_ACTIVITY, ORDERS)


@pytest.fixture(autouse=True)
def small_tasks(spark: Any) -> Iterator[None]:
    """Few tasks for these small tables: Delta's log replay (50 by default) and shuffles; restored afterwards."""
    wanted = {"spark.databricks.delta.snapshotPartitions": "2", "spark.sql.shuffle.partitions": "2"}
    before = {key: spark.conf.get(key, None) for key in wanted}
    for key, value in wanted.items():
        spark.conf.set(key, value)
    yield
    for key, value in before.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


def local_lake(tmp_path: Path, settings: Settings) -> Lake:
    """Raw archive and Delta tables under tmp_path; only the seam object lives on MinIO (an isolated key)."""
    return Lake(str(tmp_path / "raw"), str(tmp_path / "delta"),
                f"s3a://{settings.s3_bucket}/tmp/it_publish_{uuid.uuid4().hex[:8]}/batch/seam.json")


def archive(spark: Any, lake: Lake, seed: int, run_id: str) -> list[dict[str, Any]]:
    """Ten minutes of one restaurant's traffic (with duplicate sends) landed in the lake's raw archive."""
    config = GeneratorConfig(rate=0.5, duration_s=600, seed=seed, tenants=1, start=START, duplicate_fraction=0.05,
                             run_id=run_id)
    rows = [r for r in raw_rows(config) if r["occurred_at"] < RANGE.end]
    write_raw(spark, rows, lake.raw_root)
    return rows


def versions(spark: Any, lake: Lake) -> dict[str, int]:
    return {spec.name: table_version(spark, lake.path(spec)) for spec in SERVED}


def keys_once(spark: Any, lake: Lake) -> dict[str, tuple[int, int]]:
    """Per served table: (rows, distinct keys)."""
    out = {}
    for spec in SERVED:
        df = spark.read.format("delta").load(lake.path(spec))
        out[spec.name] = (df.count(), df.select(*spec.keys).distinct().count())
    return out


@pytest.mark.needs("minio")
def test_a_failing_gate_publishes_nothing(spark: Any, settings: Settings, tmp_path: Path, stack: object) -> None:
    lake = local_lake(tmp_path, settings)
    rows = archive(spark, lake, 5, "wap")
    first = publish.rebuild(spark, lake, RANGE, "first", check=False)  # setup: the gate is for the second run
    assert first["published"]["tables"][EVENTS.name]["numTargetRowsInserted"] == len({r["event_id"] for r in rows})
    assert not any(is_staged(spark, Stage(lake, "first", RANGE), spec) for spec in SERVED)  # published: dropped
    write_seam(settings, lake.seam_uri, RANGE.end, {"note": "test"})
    before_versions, before_rows = versions(spark, lake), snapshot(spark, lake)
    assert min(before_versions.values()) >= 0 and before_rows[EVENTS.name]

    # A late arrival with a negative amount lands in the archive: the rebuild stages it, the gate refuses it.
    placed = next(r for r in rows if r["event_type"] == "order_placed")
    broken = {**placed, "event_id": "broken-1", "kafka_offset": 10**9,
              "properties": orjson.dumps({**orjson.loads(placed["properties"]), "amount": -42.5}).decode()}
    write_raw(spark, [broken], lake.raw_root)
    with pytest.raises(QualityError) as failed:
        pipeline.run(spark, lake, RANGE, settings, "no-pinot-rows-", stage_id="second")

    failures = [line for line in str(failed.value).splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1, failures
    assert failures[0].startswith("FAIL bronze   expect_column_values_to_be_between(column=amount"), failures
    assert failures[0].endswith(": 1 unexpected, e.g. [-42.5]"), failures
    assert versions(spark, lake) == before_versions  # not one commit on any served table
    assert snapshot(spark, lake) == before_rows
    assert read_seam(settings, lake.seam_uri) == RANGE.end
    # The stage is kept for inspection, and holds the refused row.
    kept = Stage(lake, "second", RANGE)
    staged_events = spark.read.format("delta").load(kept.path(EVENTS))
    assert staged_events.where("event_id = 'broken-1'").count() == 1


def test_two_concurrent_backfills_of_one_range_leave_every_row_once(spark: Any, settings: Settings,
                                                                   tmp_path: Path) -> None:
    lake = local_lake(tmp_path, settings)
    rows = archive(spark, lake, 9, "occ")
    staged = threading.Barrier(2, timeout=1800)
    published: dict[str, Published] = {}
    errors: list[BaseException] = []

    def backfill(stage_id: str) -> None:
        # The backfill's steps with a barrier between write+audit and publish: both runs stage the same empty range
        # before either publishes, the case where a blind first-build append doubled every row.
        try:
            into = Stage(lake, stage_id, RANGE)
            # The gate is the other test's subject: here it would only add minutes (check=False skips it).
            publish.stage_and_check(spark, into, check=False)
            staged.wait()
            published[stage_id] = publish.run(spark, into, check=False)
        except BaseException as err:  # re-raised in the test thread
            errors.append(err)
            staged.abort()

    threads = [threading.Thread(target=backfill, args=(sid,)) for sid in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, [f"{type(err).__name__}: {str(err)[:2000]}" for err in errors]

    # Each key once in every served table, and the numbers equal an independent recount of the archive.
    assert all(n == distinct > 0 for n, distinct in keys_once(spark, lake).values()), keys_once(spark, lake)
    assert spark.read.format("delta").load(lake.path(EVENTS)).count() == len({r["event_id"] for r in rows})
    assert same(recount(rows), delta_minutes(spark, lake, RECOUNTED)) == []
    # Both staged from the empty tables: whichever published second saw the other's commits and rebuilt first.
    assert sum(p.rebuilds for p in published.values()) >= 1, {k: p.report() for k, p in published.items()}
    assert sorted(published) == ["left", "right"]
    for sid in published:
        done = Stage(lake, sid, RANGE)
        assert not any(is_staged(spark, done, spec) for spec in SERVED)
        # A retried publish task (it died before Airflow heard of its success) finds the note and is done.
        assert publish.run(spark, done).report() == {**published[sid].report(), "attempts": 0}

    # Lakes written before this change may serve an event twice (two first builds appended it): the next rebuild of
    # the range replaces its events with one copy each.
    events_df = spark.read.format("delta").load(lake.path(EVENTS))
    distinct = events_df.count()
    spark.createDataFrame(events_df.limit(1).collect(), events_df.schema).write.format("delta").mode("append").save(
        lake.path(EVENTS))
    assert keys_once(spark, lake)[EVENTS.name] == (distinct + 1, distinct)
    repaired = publish.rebuild(spark, lake, RANGE, "repair", check=False)
    assert repaired["published"]["tables"][EVENTS.name] == {"numTargetRowsInserted": 0, "numTargetRowsUpdated": 0,
                                                            "numTargetRowsDeleted": 1}
    assert keys_once(spark, lake)[EVENTS.name] == (distinct, distinct)
    assert same(recount(rows), delta_minutes(spark, lake, RECOUNTED)) == []
