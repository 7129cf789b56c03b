package io.lakepulse.connect;

import java.util.Map;
import org.apache.kafka.common.config.AbstractConfig;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigDef.Importance;
import org.apache.kafka.common.config.ConfigDef.Range;
import org.apache.kafka.common.config.ConfigDef.Type;
import org.apache.kafka.common.config.types.Password;

/** Settings of the raw-archive sink: where objects go and when a partition's batch is flushed. */
public final class RawArchiveSinkConfig extends AbstractConfig {
  public static final String S3_BUCKET = "s3.bucket";
  public static final String S3_PREFIX = "s3.prefix";
  public static final String S3_ENDPOINT = "s3.endpoint";
  public static final String S3_REGION = "s3.region";
  public static final String S3_PATH_STYLE = "s3.path.style.access";
  public static final String S3_ACCESS_KEY = "s3.access.key";
  public static final String S3_SECRET_KEY = "s3.secret.key";
  public static final String S3_RETRY_MS = "s3.retry.max.ms";
  public static final String FLUSH_RECORDS = "flush.max.records";
  public static final String FLUSH_INTERVAL_MS = "flush.interval.ms";
  public static final String MAX_OPEN_FILES = "flush.max.open.files";
  public static final String BUFFER_DIR = "local.buffer.dir";
  public static final String ROW_GROUP_BYTES = "parquet.row.group.bytes";

  public static final ConfigDef DEF = new ConfigDef()
      .define(S3_BUCKET, Type.STRING, Importance.HIGH, "Bucket the Parquet objects are written to.")
      .define(S3_PREFIX, Type.STRING, "raw", Importance.MEDIUM,
          "Key prefix; objects are <prefix>/event_date=YYYY-MM-DD/event_hour=HH/<topic>+<partition>+<startOffset>.parquet")
      .define(S3_ENDPOINT, Type.STRING, "", Importance.HIGH, "S3 endpoint URL (empty: AWS).")
      .define(S3_REGION, Type.STRING, "us-east-1", Importance.MEDIUM, "S3 region.")
      .define(S3_PATH_STYLE, Type.BOOLEAN, true, Importance.LOW, "Path-style bucket addressing (MinIO).")
      .define(S3_ACCESS_KEY, Type.STRING, "", Importance.HIGH, "Access key (empty: default credential chain).")
      .define(S3_SECRET_KEY, Type.PASSWORD, "", Importance.HIGH, "Secret key.")
      .define(S3_RETRY_MS, Type.LONG, 120_000L, Range.atLeast(0), Importance.LOW,
          "How long an upload is retried before the task fails (keep below max.poll.interval.ms).")
      .define(FLUSH_RECORDS, Type.INT, 100_000, Range.atLeast(1), Importance.HIGH,
          "A partition's batch is uploaded once it holds this many records.")
      .define(FLUSH_INTERVAL_MS, Type.LONG, 60_000L, Range.atLeast(100), Importance.HIGH,
          "... or once its first record has waited this long (the archive's maximum lag, plus upload time).")
      .define(MAX_OPEN_FILES, Type.INT, 24, Range.atLeast(1), Importance.LOW,
          "... or once it spans this many event hours (bounds memory when late events are spread out).")
      .define(BUFFER_DIR, Type.STRING, "", Importance.LOW, "Local directory for files being written (empty: java.io.tmpdir).")
      .define(ROW_GROUP_BYTES, Type.INT, 16 * 1024 * 1024, Range.atLeast(1024 * 1024), Importance.LOW,
          "Parquet row group size.");

  public RawArchiveSinkConfig(Map<?, ?> props) {
    super(DEF, props);
  }

  public String secretKey() {
    Password p = getPassword(S3_SECRET_KEY);
    return p == null ? "" : p.value();
  }
}
