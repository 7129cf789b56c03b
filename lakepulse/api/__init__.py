"""The metrics API: who is asking (bearer JWTs, tenancy) and, next, what they may read."""
