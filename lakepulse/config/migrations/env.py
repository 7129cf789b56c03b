"""Alembic's environment for the configuration schema: the URL or connection comes from lakepulse.config.migrate
(never from an alembic.ini), and migrations of concurrent deployers are serialised by an advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from lakepulse.config.models import Base

# Any constant: every process migrating this database takes the same transaction-scoped lock.
MIGRATION_LOCK = 0x6C616B65  # "lake"


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True,
                      transaction_per_migration=False)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


def run_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = create_engine(config.attributes["url"], poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=context.config.attributes["url"], target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
