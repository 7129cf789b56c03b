"""The configuration database's engine and sessions, from settings (`config_database_url`).

The engine is created on first use, so building an app or a service touches no database. Connections are checked
before use (a restarted server costs no failed request), a connection attempt and every statement are bounded;
the API answers an unreachable database with a 503 (lakepulse.config.errors.ConfigUnavailable), never engine text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from lakepulse.settings import Settings

CONNECT_TIMEOUT_S: Final = 3
STATEMENT_TIMEOUT_MS: Final = 5_000
POOL_SIZE: Final = 5
POOL_OVERFLOW: Final = 5
POOL_TIMEOUT_S: Final = 5.0


def make_engine(url: str, application_name: str = "lakepulse", **kwargs: Any) -> Engine:
    """A pooled engine for `url` with bounded connects and statements."""
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": application_name,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={STATEMENT_TIMEOUT_MS}",
        },
        **kwargs,
    )


class ConfigDatabase:
    """One process's access to the configuration database: a lazily created engine and its sessions."""

    def __init__(self, url: str, application_name: str = "lakepulse") -> None:
        self._url = url
        self._application_name = application_name
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        # Tenants this process has seen in the database (their first-use setup is done): skips a query per request.
        self.known_tenants: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings, application_name: str = "lakepulse") -> ConfigDatabase:
        return cls(settings.config_database_url, application_name)

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self._url, self._application_name)
                self._sessions = sessionmaker(self._engine, expire_on_commit=False)
            return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session (one transaction until commit); rolled back unless the caller committed."""
        self.engine  # noqa: B018 - creates the engine and the session factory
        assert self._sessions is not None
        with self._sessions() as session:
            yield session

    def close(self) -> None:
        """Close the pool's connections (at shutdown)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._sessions = None
