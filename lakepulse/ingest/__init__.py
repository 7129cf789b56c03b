"""The ingest service: validates events against the contract and makes accepted ones durable in Kafka."""
