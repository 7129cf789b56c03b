package io.lakepulse.connect;

import java.util.HashMap;
import org.apache.parquet.conf.ParquetConfiguration;
import org.apache.parquet.hadoop.api.WriteSupport;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.io.api.RecordConsumer;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.LogicalTypeAnnotation.TimeUnit;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.PrimitiveType.PrimitiveTypeName;
import org.apache.parquet.schema.Types;

/** Writes RawEvent rows straight to Parquet's record consumer (no intermediate object model). */
final class RawEventWriteSupport extends WriteSupport<RawEvent> {
  static final MessageType SCHEMA = Types.buildMessage()
      .optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("event_id")
      .optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("tenant_id")
      .optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("event_type")
      .optional(PrimitiveTypeName.INT64).as(LogicalTypeAnnotation.timestampType(true, TimeUnit.MICROS)).named("occurred_at")
      .optional(PrimitiveTypeName.INT64).as(LogicalTypeAnnotation.timestampType(true, TimeUnit.MICROS)).named("received_at")
      .optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("source")
      .optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("device_family")
      .optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("properties")
      .optional(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("extra")
      .required(PrimitiveTypeName.BINARY).as(LogicalTypeAnnotation.stringType()).named("kafka_topic")
      .required(PrimitiveTypeName.INT32).named("kafka_partition")
      .required(PrimitiveTypeName.INT64).named("kafka_offset")
      .named("raw_event");

  private RecordConsumer out;

  @Override
  public WriteContext init(ParquetConfiguration configuration) {
    return new WriteContext(SCHEMA, new HashMap<>());
  }

  @Override
  public WriteContext init(org.apache.hadoop.conf.Configuration configuration) {
    return new WriteContext(SCHEMA, new HashMap<>());
  }

  @Override
  public void prepareForWrite(RecordConsumer recordConsumer) {
    out = recordConsumer;
  }

  @Override
  public void write(RawEvent e) {
    out.startMessage();
    string(0, "event_id", e.eventId);
    string(1, "tenant_id", e.tenantId);
    string(2, "event_type", e.eventType);
    timestamp(3, "occurred_at", e.occurredAtMicros);
    timestamp(4, "received_at", e.receivedAtMicros);
    string(5, "source", e.source);
    string(6, "device_family", e.deviceFamily);
    string(7, "properties", e.properties);
    string(8, "extra", e.extra);
    string(9, "kafka_topic", e.kafkaTopic);
    out.startField("kafka_partition", 10);
    out.addInteger(e.kafkaPartition);
    out.endField("kafka_partition", 10);
    out.startField("kafka_offset", 11);
    out.addLong(e.kafkaOffset);
    out.endField("kafka_offset", 11);
    out.endMessage();
  }

  private void string(int index, String name, String value) {
    if (value != null) {
      out.startField(name, index);
      out.addBinary(Binary.fromString(value));
      out.endField(name, index);
    }
  }

  private void timestamp(int index, String name, Long micros) {
    if (micros != null) {
      out.startField(name, index);
      out.addLong(micros);
      out.endField(name, index);
    }
  }
}
