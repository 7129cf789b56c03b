"""Checked-in Pinot and Trino files equal what the metric catalog generates, and agree with settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from lakepulse.aggregations import COURIER_STATE_SCHEMA, ORDER_STATE_SCHEMA, PARTIAL_SCHEMA
from lakepulse.catalog import get_catalog
from lakepulse.catalog.generate import REPO_ROOT, generated_files, main, stale_files
from lakepulse.catalog.pinot import KAFKA30_CONSUMER_FACTORY, KAFKA_JSON_DECODER
from lakepulse.catalog.trino import render_view, trino_views
from lakepulse.settings import Settings


def test_checked_in_files_equal_generated() -> None:
    stale = stale_files(REPO_ROOT)
    assert stale == [], f"run `python -m lakepulse.catalog.generate`; stale: {stale}"


def test_check_mode_detects_a_hand_edit(tmp_path) -> None:
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    table = tmp_path / "pinot_tables" / "metrics_minute" / "table.json"
    table.write_text(table.read_text().replace('"replication": "1"', '"replication": "3"'))
    assert main(["--check", "--root", str(tmp_path)]) == 1


def _load(table: str, kind: str) -> dict:
    return json.loads(
        generated_files()[REPO_ROOT.joinpath("pinot_tables", table, f"{kind}.json").relative_to(REPO_ROOT)]
    )


def test_pinot_tables_are_upsert_tables_on_the_settings_topics() -> None:
    defaults = Settings.model_fields
    expected = {
        "metrics_minute": (
            defaults["topic_metrics_minute"].default,
            ["tenant_id", "metric", "dims_key", "window_start"],
        ),
        "orders_live": (defaults["topic_orders_live"].default, ["tenant_id", "order_id"]),
        "couriers_live": (defaults["topic_couriers_live"].default, ["tenant_id", "courier_id"]),
    }
    for table, (topic, key) in expected.items():
        schema, config = _load(table, "schema"), _load(table, "table")
        assert schema["primaryKeyColumns"] == key
        assert config["tableType"] == "REALTIME"
        assert config["routing"]["instanceSelectorType"] == "strictReplicaGroup"
        assert config["upsertConfig"] == {"mode": "FULL", "comparisonColumns": ["updated_at"]}
        stream = config["ingestionConfig"]["streamIngestionConfig"]["streamConfigMaps"][0]
        assert stream["stream.kafka.topic.name"] == topic
        assert stream["stream.kafka.broker.list"] == defaults["kafka_bootstrap"].default == "127.0.0.1:9092"
        assert stream["stream.kafka.consumer.factory.class.name"] == KAFKA30_CONSUMER_FACTORY
        assert stream["stream.kafka.decoder.class.name"] == KAFKA_JSON_DECODER
        assert stream["realtime.segment.flush.threshold.segment.size"] == "100M"
        assert config["segmentsConfig"]["replication"] == "1"
        time_col = config["segmentsConfig"]["timeColumnName"]
        assert time_col in {f["name"] for f in schema["dateTimeFieldSpecs"]}


def test_pinot_schema_columns_mirror_the_spark_row_contracts() -> None:
    for table, spark_schema in (
        ("metrics_minute", PARTIAL_SCHEMA),
        ("orders_live", ORDER_STATE_SCHEMA),
        ("couriers_live", COURIER_STATE_SCHEMA),
    ):
        schema = _load(table, "schema")
        specs = schema["dimensionFieldSpecs"] + schema["metricFieldSpecs"] + schema["dateTimeFieldSpecs"]
        assert sorted(s["name"] for s in specs) == sorted(spark_schema.fieldNames())
    types = {s["name"]: s["dataType"] for s in _load("metrics_minute", "schema")["dimensionFieldSpecs"]}
    assert (types["hll_sketch"], types["theta_sketch"], types["dims"]) == ("BYTES", "BYTES", "JSON")


def test_trino_views_cover_every_metric_and_render_the_seam() -> None:
    views = trino_views(get_catalog())
    assert len(views) == len(get_catalog().metrics) + 1
    rendered = render_view(views["00_metrics_minute_all.sql"], datetime(2024, 5, 1, 14, 0, tzinfo=UTC))
    assert "${seam}" not in rendered and "--" not in rendered
    assert "window_start < from_iso8601_timestamp('2024-05-01T14:00:00.000Z')" in rendered
    assert "window_start >= TIMESTAMP '2024-05-01 14:00:00.000'" in rendered
    sales = views["10_metric_gross_sales.sql"]
    assert "json_extract_scalar(dims, '$.channel') AS channel" in sales
    assert "WHERE metric = 'gross_sales'" in sales
