"""The speed layer: Spark Structured Streaming from `events.raw` to the Pinot upsert topics."""
