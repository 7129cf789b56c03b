"""Alembic migrations of the configuration schema (run through lakepulse.config.migrate, from any directory)."""
