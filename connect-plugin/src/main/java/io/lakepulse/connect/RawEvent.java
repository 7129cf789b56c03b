package io.lakepulse.connect;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;

/**
 * One archived row: the typed envelope, `properties` and any other top-level fields as JSON text
 * cut byte-for-byte from the message (lossless), and where the record came from in Kafka.
 */
final class RawEvent {
  private static final JsonFactory JSON = new JsonFactory();

  String eventId;
  String tenantId;
  String eventType;
  Long occurredAtMicros;
  Long receivedAtMicros;
  String source;
  String deviceFamily;
  String properties; // the JSON value exactly as received
  String extra; // other top-level fields as a JSON object, or the whole payload when it is not a JSON object
  String kafkaTopic;
  int kafkaPartition;
  long kafkaOffset;

  /** Parse a message value; never throws: what cannot be typed is kept as text in `extra`. */
  static RawEvent parse(byte[] value, String topic, int partition, long offset) {
    RawEvent e = new RawEvent();
    e.kafkaTopic = topic;
    e.kafkaPartition = partition;
    e.kafkaOffset = offset;
    if (value == null) {
      return e;
    }
    StringBuilder extra = new StringBuilder();
    try (JsonParser p = JSON.createParser(value)) {
      if (p.nextToken() != JsonToken.START_OBJECT) {
        throw new IOException("not a JSON object");
      }
      while (p.nextToken() == JsonToken.FIELD_NAME) {
        String name = p.currentName();
        JsonToken t = p.nextToken();
        if (t == JsonToken.VALUE_STRING && e.setText(name, p.getText())) {
          continue;
        }
        int start = (int) p.currentTokenLocation().getByteOffset();
        p.skipChildren();
        int end = (int) p.currentLocation().getByteOffset();
        String raw = new String(value, start, end - start, StandardCharsets.UTF_8);
        if (name.equals("properties")) {
          e.properties = raw;
        } else {
          extra.append(extra.length() == 0 ? "{" : ",");
          extra.append(quote(name)).append(':').append(raw);
        }
      }
      e.extra = extra.length() == 0 ? null : extra.append('}').toString();
    } catch (IOException | RuntimeException bad) {
      // Not an event object: keep the payload itself, so nothing that reached the topic is lost.
      RawEvent whole = new RawEvent();
      whole.kafkaTopic = topic;
      whole.kafkaPartition = partition;
      whole.kafkaOffset = offset;
      whole.extra = new String(value, StandardCharsets.UTF_8);
      return whole;
    }
    return e;
  }

  private boolean setText(String name, String text) {
    switch (name) {
      case "event_id" -> eventId = text;
      case "tenant_id" -> tenantId = text;
      case "event_type" -> eventType = text;
      case "source" -> source = text;
      case "device_family" -> deviceFamily = text;
      case "occurred_at" -> {
        occurredAtMicros = micros(text);
        return occurredAtMicros != null; // an unparsable time stays, as text, in `extra`
      }
      case "received_at" -> {
        receivedAtMicros = micros(text);
        return receivedAtMicros != null;
      }
      default -> {
        return false;
      }
    }
    return true;
  }

  /** Microseconds since the epoch of an RFC 3339 date-time with zone, or null. */
  static Long micros(String text) {
    String s = text.trim().replace(' ', 'T').replace('t', 'T').replace('z', 'Z');
    try {
      OffsetDateTime t = OffsetDateTime.parse(s, DateTimeFormatter.ISO_OFFSET_DATE_TIME);
      long seconds = t.toEpochSecond();
      return Math.addExact(Math.multiplyExact(seconds, 1_000_000L), t.getNano() / 1_000L);
    } catch (DateTimeParseException | ArithmeticException bad) {
      return null;
    }
  }

  private static String quote(String name) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : name.toCharArray()) {
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        default -> {
          if (c < 0x20) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    return b.append('"').toString();
  }
}
