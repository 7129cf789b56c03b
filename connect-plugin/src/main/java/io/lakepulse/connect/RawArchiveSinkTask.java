package io.lakepulse.connect;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.apache.parquet.hadoop.ParquetFileWriter;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.api.WriteSupport;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.io.LocalOutputFile;
import org.apache.parquet.io.OutputFile;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3ClientBuilder;
import software.amazon.awssdk.services.s3.S3Configuration;
import software.amazon.awssdk.services.s3.model.PutObjectRequest;

/**
 * Buffers each assigned partition's records into one local Parquet file per event hour, uploads them
 * when the batch is full or old enough, and only then lets Connect commit the offsets (preCommit).
 *
 * <p>Object names are <prefix>/event_date=D/event_hour=H/<topic>+<partition>+<first offset of that hour
 * in the batch>. A replay after a crash starts at the last committed offset, so it rewrites the same
 * names for batches that start at the same offset; batches cut elsewhere leave duplicate rows in other
 * objects, which readers remove by event_id. Nothing uploaded is ever needed for correctness before
 * its offsets commit, and no offset commits before its rows are in S3: at least once, never lost.
 */
public final class RawArchiveSinkTask extends SinkTask {
  private static final Logger LOG = LoggerFactory.getLogger(RawArchiveSinkTask.class);

  private RawArchiveSinkConfig config;
  private S3Client s3;
  private Path bufferDir;
  private final Map<TopicPartition, Batch> batches = new HashMap<>();
  private final Map<TopicPartition, OffsetAndMetadata> uploaded = new HashMap<>();

  @Override
  public String version() {
    return Version.VERSION;
  }

  @Override
  public void start(Map<String, String> props) {
    config = new RawArchiveSinkConfig(props);
    s3 = s3Client(config);
    try {
      String base = config.getString(RawArchiveSinkConfig.BUFFER_DIR);
      Path parent = base.isEmpty() ? Path.of(System.getProperty("java.io.tmpdir")) : Path.of(base);
      Files.createDirectories(parent);
      bufferDir = Files.createTempDirectory(parent, "lakepulse-raw-archive-");
    } catch (IOException e) {
      throw new ConnectException("cannot create the local buffer directory", e);
    }
  }

  static S3Client s3Client(RawArchiveSinkConfig c) {
    S3ClientBuilder b = S3Client.builder()
        .httpClientBuilder(UrlConnectionHttpClient.builder())
        .region(Region.of(c.getString(RawArchiveSinkConfig.S3_REGION)))
        .serviceConfiguration(S3Configuration.builder()
            .pathStyleAccessEnabled(c.getBoolean(RawArchiveSinkConfig.S3_PATH_STYLE)).build())
        // Checksums only where S3 requires them: S3-compatible stores differ in what they accept.
        .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED);
    String endpoint = c.getString(RawArchiveSinkConfig.S3_ENDPOINT);
    if (!endpoint.isEmpty()) {
      b.endpointOverride(URI.create(endpoint));
    }
    String access = c.getString(RawArchiveSinkConfig.S3_ACCESS_KEY);
    b.credentialsProvider(access.isEmpty()
        ? DefaultCredentialsProvider.builder().build()
        : StaticCredentialsProvider.create(AwsBasicCredentials.create(access, c.secretKey())));
    return b.build();
  }

  @Override
  public void put(Collection<SinkRecord> records) {
    int maxRecords = config.getInt(RawArchiveSinkConfig.FLUSH_RECORDS);
    int maxFiles = config.getInt(RawArchiveSinkConfig.MAX_OPEN_FILES);
    for (SinkRecord r : records) {
      TopicPartition tp = new TopicPartition(r.topic(), r.kafkaPartition());
      RawEvent e = RawEvent.parse(bytes(r.value()), r.topic(), r.kafkaPartition(), r.kafkaOffset());
      String hour = hourPath(e, r.timestamp());
      Batch b = batches.get(tp);
      if (b != null && !b.files.containsKey(hour) && b.files.size() >= maxFiles) {
        flush(b);
        b = null;
      }
      if (b == null) {
        b = new Batch(tp);
        batches.put(tp, b);
      }
      b.add(hour, e);
      if (b.count >= maxRecords) {
        flush(b);
      }
    }
    // Connect calls put() on every poll, with no records too: time-based flushes happen here.
    long now = System.currentTimeMillis();
    long interval = config.getLong(RawArchiveSinkConfig.FLUSH_INTERVAL_MS);
    for (Batch b : new ArrayList<>(batches.values())) {
      if (now - b.startedMs >= interval) {
        flush(b);
      }
    }
  }

  @Override
  public Map<TopicPartition, OffsetAndMetadata> preCommit(Map<TopicPartition, OffsetAndMetadata> current) {
    // Only what is in S3 may be committed; Connect's own position (`current`) may be ahead of it.
    Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
    for (TopicPartition tp : current.keySet()) {
      OffsetAndMetadata done = uploaded.get(tp);
      if (done != null) {
        commit.put(tp, done);
      }
    }
    return commit;
  }

  @Override
  public void close(Collection<TopicPartition> partitions) {
    // Revoked: whatever was not uploaded is re-read by the partition's next owner from the committed offset.
    for (TopicPartition tp : partitions) {
      Batch b = batches.remove(tp);
      if (b != null) {
        b.discard();
      }
      uploaded.remove(tp);
    }
  }

  @Override
  public void stop() {
    for (Batch b : batches.values()) {
      b.discard();
    }
    batches.clear();
    if (s3 != null) {
      s3.close();
    }
    if (bufferDir != null) {
      try (Stream<Path> paths = Files.walk(bufferDir)) {
        paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      } catch (IOException ignored) {
        // a leftover temp dir is harmless
      }
    }
  }

  private static byte[] bytes(Object value) {
    if (value == null || value instanceof byte[]) {
      return (byte[]) value;
    }
    if (value instanceof String s) {
      return s.getBytes(StandardCharsets.UTF_8);
    }
    throw new ConnectException("raw-archive sink needs value.converter=ByteArrayConverter (or StringConverter), got "
        + value.getClass().getName());
  }

  /** Hive-style partition of the event's hour (UTC): event time, else receive time, else the record time. */
  static String hourPath(RawEvent e, Long recordTimestampMs) {
    long micros;
    if (e.occurredAtMicros != null) {
      micros = e.occurredAtMicros;
    } else if (e.receivedAtMicros != null) {
      micros = e.receivedAtMicros;
    } else {
      micros = (recordTimestampMs == null ? 0L : recordTimestampMs) * 1000L;
    }
    ZonedDateTime t = Instant.ofEpochSecond(Math.floorDiv(micros, 1_000_000L)).atZone(ZoneOffset.UTC);
    return String.format("event_date=%04d-%02d-%02d/event_hour=%02d",
        t.getYear(), t.getMonthValue(), t.getDayOfMonth(), t.getHour());
  }

  private void flush(Batch b) {
    long started = System.currentTimeMillis();
    String prefix = config.getString(RawArchiveSinkConfig.S3_PREFIX).replaceAll("/+$", "");
    String bucket = config.getString(RawArchiveSinkConfig.S3_BUCKET);
    try {
      for (Map.Entry<String, HourFile> entry : b.files.entrySet()) {
        HourFile f = entry.getValue();
        f.writer.close();
        String key = String.format("%s/%s/%s+%d+%020d.parquet",
            prefix, entry.getKey(), b.tp.topic(), b.tp.partition(), f.startOffset);
        upload(bucket, key, f.path);
        Files.deleteIfExists(f.path);
      }
    } catch (IOException e) {
      b.discard();
      batches.remove(b.tp);
      throw new ConnectException("writing Parquet for " + b.tp + " failed", e);
    }
    batches.remove(b.tp);
    uploaded.put(b.tp, new OffsetAndMetadata(b.lastOffset + 1));
    LOG.info("raw-archive: {} records of {} offsets {}..{} in {} objects, batch age {} ms, flush {} ms",
        b.count, b.tp, b.firstOffset, b.lastOffset, b.files.size(), started - b.startedMs,
        System.currentTimeMillis() - started);
  }

  private void upload(String bucket, String key, Path file) {
    long deadline = System.currentTimeMillis() + config.getLong(RawArchiveSinkConfig.S3_RETRY_MS);
    long backoff = 500;
    while (true) {
      try {
        s3.putObject(PutObjectRequest.builder().bucket(bucket).key(key).build(), RequestBody.fromFile(file));
        return;
      } catch (SdkException e) {
        if (System.currentTimeMillis() + backoff > deadline) {
          throw new ConnectException("uploading s3://" + bucket + "/" + key + " failed", e);
        }
        LOG.warn("raw-archive: upload of {} failed ({}), retrying in {} ms", key, e.getMessage(), backoff);
        try {
          Thread.sleep(backoff);
        } catch (InterruptedException interrupted) {
          Thread.currentThread().interrupt();
          throw new ConnectException("interrupted while retrying an upload", interrupted);
        }
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  }

  /** One partition's records since its last upload, one open Parquet file per event hour. */
  private final class Batch {
    final TopicPartition tp;
    final long startedMs = System.currentTimeMillis();
    final Map<String, HourFile> files = new LinkedHashMap<>();
    long firstOffset = -1;
    long lastOffset = -1;
    int count;

    Batch(TopicPartition tp) {
      this.tp = tp;
    }

    void add(String hour, RawEvent e) {
      HourFile f = files.get(hour);
      if (f == null) {
        f = new HourFile(bufferDir, tp, hour, e.kafkaOffset, config.getInt(RawArchiveSinkConfig.ROW_GROUP_BYTES));
        files.put(hour, f);
      }
      try {
        f.writer.write(e);
      } catch (IOException ex) {
        throw new UncheckedIOException(ex);
      }
      if (firstOffset < 0) {
        firstOffset = e.kafkaOffset;
      }
      lastOffset = e.kafkaOffset;
      count++;
    }

    void discard() {
      for (HourFile f : files.values()) {
        try {
          f.writer.close();
        } catch (IOException | RuntimeException ignored) {
          // being thrown away anyway
        }
        f.path.toFile().delete();
      }
      files.clear();
    }
  }

  private static final class HourFile {
    final Path path;
    final long startOffset;
    final ParquetWriter<RawEvent> writer;

    HourFile(Path dir, TopicPartition tp, String hour, long startOffset, int rowGroupBytes) {
      this.startOffset = startOffset;
      this.path = dir.resolve(tp.topic() + "+" + tp.partition() + "+" + startOffset + "+"
          + hour.replace('/', '_') + ".parquet");
      try {
        Files.deleteIfExists(path);
        writer = new Builder(new LocalOutputFile(path))
            .withWriteMode(ParquetFileWriter.Mode.OVERWRITE)
            .withCompressionCodec(CompressionCodecName.SNAPPY)
            .withRowGroupSize((long) rowGroupBytes)
            .build();
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  }

  private static final class Builder extends ParquetWriter.Builder<RawEvent, Builder> {
    Builder(OutputFile file) {
      super(file);
    }

    @Override
    protected Builder self() {
      return this;
    }

    @Override
    protected WriteSupport<RawEvent> getWriteSupport(org.apache.hadoop.conf.Configuration conf) {
      return new RawEventWriteSupport();
    }

    @Override
    protected WriteSupport<RawEvent> getWriteSupport(org.apache.parquet.conf.ParquetConfiguration conf) {
      return new RawEventWriteSupport();
    }
  }

  List<TopicPartition> buffered() {
    return new ArrayList<>(batches.keySet());
  }
}
