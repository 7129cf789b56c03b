"""Each core service of the local stack does real work: Kafka, MinIO, Connect, Spark, Airflow."""

from __future__ import annotations

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from lakepulse.platform.components.airflow import airflow_password
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.kafka import admin
from lakepulse.platform.components.minio import s3_client

pytestmark = pytest.mark.integration


def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    client = admin(bootstrap)  # keep the handle alive until the futures resolve
    for future in client.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)


def _produce(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0, "messages left unacknowledged"


@pytest.mark.needs("kafka")
def test_kafka_round_trip(stack: Context, run_id: str) -> None:
    bootstrap = stack.settings.kafka_bootstrap
    topic = f"test.roundtrip.{run_id}"
    _create_topic(bootstrap, topic)
    sent = [(f"k{i}", f"v{i}-{run_id}") for i in range(25)]
    _produce(bootstrap, topic, sent)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{run_id}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[str, str]] = []
    for _ in range(60):
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append((msg.key().decode(), msg.value().decode()))
        if len(got) == len(sent):
            break
    consumer.close()
    assert got == sent


@pytest.mark.needs("kafka")
def test_stack_topics_exist(stack: Context) -> None:
    s = stack.settings
    topics = admin(s.kafka_bootstrap).list_topics(timeout=10).topics
    for name in (s.topic_events_raw, s.topic_events_dlq, s.topic_metrics_minute, s.topic_orders_live):
        assert name in topics
    assert len(topics[s.topic_events_raw].partitions) == s.events_raw_partitions


@pytest.mark.needs("minio")
def test_minio_put_and_get(stack: Context, run_id: str) -> None:
    client = s3_client(stack.settings)
    key = f"tests/{run_id}/hello.txt"
    body = f"hello {run_id}".encode()
    client.put_object(Bucket=stack.settings.s3_bucket, Key=key, Body=body)
    assert client.get_object(Bucket=stack.settings.s3_bucket, Key=key)["Body"].read() == body
    client.delete_object(Bucket=stack.settings.s3_bucket, Key=key)


@pytest.mark.needs("connect")
def test_connect_worker_answers(stack: Context) -> None:
    root = httpx.get(stack.settings.kafka_connect_url, timeout=10).json()
    assert root["version"] == "4.1.1"
    assert root["kafka_cluster_id"]
    assert isinstance(httpx.get(f"{stack.settings.kafka_connect_url}/connectors", timeout=10).json(), list)


@pytest.mark.spark
@pytest.mark.needs("minio")
def test_spark_writes_and_reads_delta_on_s3a(spark, stack: Context, run_id: str) -> None:  # type: ignore[no-untyped-def]
    path = f"s3a://{stack.settings.s3_bucket}/tests/{run_id}/delta_table"
    rows = [(i, f"tenant-{i % 3}", i * 1.5) for i in range(100)]
    spark.createDataFrame(rows, "id INT, tenant_id STRING, amount DOUBLE").write.format("delta").save(path)
    spark.createDataFrame([(100, "tenant-1", 1.0)], "id INT, tenant_id STRING, amount DOUBLE") \
        .write.format("delta").mode("append").save(path)

    back_df = spark.read.format("delta").load(path)
    assert back_df.count() == 101
    totals = {r.tenant_id: r.total for r in back_df.groupBy("tenant_id").sum("amount")
              .withColumnRenamed("sum(amount)", "total").collect()}
    assert totals["tenant-1"] == pytest.approx(sum(i * 1.5 for i in range(100) if i % 3 == 1) + 1.0)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()
    assert len(history) == 2  # two commits in the Delta log on MinIO


@pytest.mark.spark
@pytest.mark.needs("kafka")
def test_spark_reads_kafka(spark, stack: Context, run_id: str) -> None:  # type: ignore[no-untyped-def]
    bootstrap = stack.settings.kafka_bootstrap
    topic = f"test.spark.{run_id}"
    _create_topic(bootstrap, topic, partitions=2)
    _produce(bootstrap, topic, [(f"k{i}", str(i)) for i in range(40)])
    df = (spark.read.format("kafka").option("kafka.bootstrap.servers", bootstrap)
          .option("subscribe", topic).option("startingOffsets", "earliest").load())
    values = sorted(int(r.value) for r in df.selectExpr("CAST(value AS STRING) AS value").collect())
    assert values == list(range(40))


@pytest.mark.needs("airflow-api", "airflow-scheduler")
def test_airflow_api_answers_with_auth(stack: Context) -> None:
    url = stack.settings.airflow_url
    token = httpx.post(f"{url}/auth/token", json={"username": stack.settings.airflow_user,
                                                  "password": airflow_password(stack)}, timeout=10)
    assert token.status_code in (200, 201), token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    errors = httpx.get(f"{url}/api/v2/importErrors", headers=headers, timeout=10).json()
    assert errors["total_entries"] == 0, errors
    health = httpx.get(f"{url}/api/v2/monitor/health", timeout=10).json()
    assert health["scheduler"]["status"] == "healthy"
