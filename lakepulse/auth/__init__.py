"""Who is asking: bearer JWTs for the metrics and ingest APIs (verify, mint) and the `lakepulse token` command."""
