"""Settings for every lakepulse deployable: one place where endpoints, ports and paths come from.

Every endpoint is a setting, so the same code runs against the local stack (the default) or against
external Kafka, S3, Spark, Pinot, Trino and Airflow clusters (`LAKEPULSE_MODE=cluster`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_PLACEHOLDER_SECRET = "lakepulse-local-only"
# The JWT signing secret's local default: the same placeholder, lengthened to the 32 bytes HS256 needs
# (RFC 7518 §3.2; PyJWT warns below that), and refused outside local mode like the other one.
LOCAL_PLACEHOLDER_JWT_SECRET = LOCAL_PLACEHOLDER_SECRET + "-jwt-signing-secret"
MIN_JWT_SECRET_BYTES = 32


class Settings(BaseSettings):
    """Endpoints, credentials and paths; read from `LAKEPULSE_*` environment variables or `.env`."""

    # hide_input_in_errors: a refused setting must not print the secrets it was read with.
    model_config = SettingsConfigDict(
        env_prefix="LAKEPULSE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    mode: Literal["local", "cluster"] = "local"

    # Where provisioned software (downloads, builds) and runtime state (data, logs) live.
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "lakepulse")
    state_dir: Path = Field(default_factory=lambda: Path.home() / ".local" / "state" / "lakepulse")

    bind_host: str = "127.0.0.1"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    kafka_connect_url: str = "http://127.0.0.1:8083"
    topic_events_raw: str = "events.raw"
    topic_events_dlq: str = "events.dlq"
    topic_events_late: str = "events.late"
    topic_metrics_minute: str = "metrics.minute"
    # Prep-time rows (confirmed → ready of one order) between the two streaming queries.
    topic_prep_events: str = "prep.events"
    topic_orders_live: str = "orders.live"
    topic_couriers_live: str = "couriers.live"
    topic_alerts: str = "alerts"
    events_raw_partitions: int = 6

    # S3 / MinIO
    s3_endpoint: str = "http://127.0.0.1:9400"
    s3_console_port: int = 9401
    s3_region: str = "us-east-1"
    s3_access_key: str = "lakepulse"
    s3_secret_key: str = LOCAL_PLACEHOLDER_SECRET
    s3_bucket: str = "lake"

    # Pinot
    pinot_controller_url: str = "http://127.0.0.1:9000"
    pinot_broker_url: str = "http://127.0.0.1:8099"
    pinot_server_port: int = 8098
    pinot_server_admin_port: int = 8097  # the server's REST API (health, segment download)
    pinot_grpc_port: int = 8090
    pinot_zk_port: int = 2181

    # Trino
    trino_url: str = "http://127.0.0.1:8088"
    trino_user: str = "lakepulse"

    # Spark: `local[2]` on one machine, `spark://host:7077` (or k8s://...) on a cluster.
    spark_master: str = "local[2]"
    # OS niceness of the batch layer's spark-submit (driver and, in local mode, its tasks). The batch layer runs
    # hours behind by design; on a small host the speed layer must not wait for it. 19 = the same priority as the
    # niced streaming JVM (LAKEPULSE_STREAMING_SLOW_NICENESS), so the two share what the minute JVM leaves.
    batch_niceness: int = Field(default=19, ge=0, le=19)

    # Airflow
    airflow_url: str = "http://127.0.0.1:8080"
    airflow_user: str = "admin"
    # The batch layer runs by itself: the scheduled DAGs are unpaused when created and at every `up`.
    # False keeps them paused (runs only when triggered, e.g. by `lakepulse backfill`).
    airflow_unpause_dags: bool = True

    # lakepulse's own APIs
    api_port: int = 8000
    # Metrics API processes (uvicorn workers); each keeps its own engine connections and caches.
    api_workers: int = Field(default=2, ge=1, le=64)
    # Requests per second one tenant (or, for analyst/admin tokens, one token subject) may make to the
    # metrics API, with bursts up to `api_rate_burst`; above it the API answers 429 with Retry-After.
    # The budget is split across api_workers (each process counts its own share). 0 turns the limit off.
    api_rate_limit_per_s: float = Field(default=200.0, ge=0)
    api_rate_burst: int = Field(default=400, ge=1)
    # Identical reads of one tenant within this many seconds share one engine query (dashboards poll).
    api_cache_ttl_s: float = Field(default=1.0, ge=0, le=60)
    # While one request recomputes an expired answer, the others get the expired one if it is at most this many
    # seconds past its TTL (instead of waiting for the engines); 0 = they wait.
    api_cache_stale_s: float = Field(default=4.0, ge=0, le=60)
    # A read that finds its answer with less than this many seconds left recomputes it in the background, so a
    # key read steadily never makes anyone wait (at most ttl/(ttl-this) times the computations); 0 = off.
    api_cache_refresh_ahead_s: float = Field(default=0.25, ge=0, le=60)
    # A private directory the API's workers share answers through (one computation per key for all of them);
    # `lakepulse up` sets it for the stack's API. None: each worker computes its own.
    api_shared_answers_dir: Path | None = None
    ingest_port: int = 8001
    ingest_max_body_bytes: int = 16 * 1024 * 1024
    ingest_max_events: int = 20_000
    # Demo traffic `lakepulse up` sends through the ingest API (the `demo` service), so numbers move on a
    # new stack: events per second over `demo_tenants` restaurants named demo-*; 0 turns it off.
    demo_rate: float = 20.0
    demo_tenants: int = 5
    # How long a request waits for Kafka to acknowledge its events before answering 503.
    ingest_delivery_timeout_s: float = 5.0
    # Event-time sanity, checked per event at ingest (a reason, then the dead-letter topic) and again by the
    # streaming job, so no event moves a watermark from another clock: `occurred_at` may be at most
    # `event_max_future_skew_s` ahead of the server's clock, and at most `event_max_age_days` old (None: no
    # horizon, any past event is accepted and repaired into history).
    event_max_future_skew_s: float = Field(default=300.0, ge=0)
    event_max_age_days: float | None = Field(default=30.0, gt=0)
    # The largest serialised event the ingest API sends to Kafka; a larger one is refused with a reason (the
    # rest of its request is accepted). Must not exceed events.raw's max.message.bytes (checked at start).
    ingest_max_event_bytes: int = Field(default=900_000, ge=1024)

    # API authentication (bearer JWTs, lakepulse/auth/tokens.py). Locally tokens are HS256, signed with
    # `auth_jwt_secret` (`lakepulse token` mints them); in cluster mode they come from the identity
    # provider and are verified as RS256 against its JWKS. Audience and issuer are checked on every token.
    # The ingest API checks the same tokens: producers hold role `producer` with a `tenants` claim, and
    # `auth_enabled` false lets anyone write any tenant there too (local experiments only).
    auth_enabled: bool = True
    auth_jwt_secret: SecretStr = SecretStr(LOCAL_PLACEHOLDER_JWT_SECRET)
    auth_jwt_audience: str = "lakepulse"
    auth_jwt_issuer: str = "lakepulse-local"
    auth_jwks_url: str | None = None

    # PostgreSQL: configuration (dashboards, widgets, alert rules and history) and Airflow's metadata, each in
    # a database of its own. Locally the stack runs it (`postgres` service) on `postgres_port`; in cluster
    # mode set `database_url` and `airflow_database_url` to a managed PostgreSQL.
    postgres_port: int = 5432
    postgres_user: str = "lakepulse"
    postgres_password: SecretStr = SecretStr(LOCAL_PLACEHOLDER_SECRET)
    database_url: SecretStr | None = None  # default: the local server's `lakepulse` database
    airflow_database_url: SecretStr | None = None  # default: the local server's `airflow` database

    # Alert webhooks: a tenant's URL may not reach loopback, link-local or private addresses (the server
    # would call internal services for it) unless this allows it (local experiments, tests).
    alert_webhook_allow_private: bool = False

    # Live push (SSE): viewers one API process serves (more → 503 with Retry-After), the updates one slow
    # viewer may have queued before it is dropped, the heartbeat interval, and the lifetime of the
    # short-lived stream tokens a browser's EventSource carries in its URL.
    sse_max_viewers: int = Field(default=5_000, ge=1)
    sse_queue_size: int = Field(default=64, ge=1)
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    stream_token_ttl_s: int = Field(default=60, ge=5, le=3600)

    @field_validator("airflow_database_url")
    @classmethod
    def _airflow_metadata_on_psycopg(cls, url: SecretStr | None) -> SecretStr | None:
        """Airflow's metadata URL through psycopg 3, the PostgreSQL driver installed (SQLAlchemy's default for
        `postgresql://` is psycopg2, which is not); any other database is refused, SQLite included."""
        if url is None:
            return None
        scheme, sep, rest = url.get_secret_value().partition("://")
        if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError("LAKEPULSE_AIRFLOW_DATABASE_URL must be a postgresql:// or postgresql+psycopg:// URL")
        return SecretStr(f"postgresql+psycopg://{rest}")

    @model_validator(mode="after")
    def _refuse_placeholder_secrets_outside_local(self) -> Settings:
        if self.mode != "local" and self.s3_secret_key == LOCAL_PLACEHOLDER_SECRET:
            raise ValueError(
                "LAKEPULSE_S3_SECRET_KEY still holds the local placeholder; set a real secret in cluster mode"
            )
        if self.mode != "local" and (self.database_url is None or self.airflow_database_url is None):
            raise ValueError("cluster mode needs LAKEPULSE_DATABASE_URL and LAKEPULSE_AIRFLOW_DATABASE_URL "
                             "(a managed PostgreSQL); the local server's defaults are refused")
        return self

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        secret = self.auth_jwt_secret.get_secret_value()
        if self.mode == "local":
            # The HS256 key local tokens are signed with; cluster mode verifies RS256 tokens and never uses it.
            if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
                raise ValueError(f"LAKEPULSE_AUTH_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (HS256 key)")
            return self
        if secret in (LOCAL_PLACEHOLDER_SECRET, LOCAL_PLACEHOLDER_JWT_SECRET):
            raise ValueError(
                "LAKEPULSE_AUTH_JWT_SECRET still holds the local placeholder; set a real secret in cluster mode"
            )
        if not self.auth_jwks_url:
            raise ValueError(
                "cluster mode verifies tokens with the identity provider's keys: set LAKEPULSE_AUTH_JWKS_URL"
            )
        url = urlparse(self.auth_jwks_url)
        # Whoever can change the keys in transit can mint any token, so keys travel over TLS unless the
        # identity provider is on this machine.
        if url.scheme != "https" and not (url.scheme == "http" and url.hostname in ("127.0.0.1", "::1", "localhost")):
            raise ValueError("LAKEPULSE_AUTH_JWKS_URL must be an https:// URL (http only to a loopback address)")
        return self

    @property
    def s3_port(self) -> int:
        """Port of the S3 endpoint (used when the local stack starts MinIO)."""
        return int(self.s3_endpoint.rsplit(":", 1)[1].split("/")[0])

    def postgres_url(self, database: str, driver: str = "psycopg") -> str:
        """The local PostgreSQL server's URL of `database` (the stack's own server); user and password are
        percent-encoded, so any character of a password (`@`, `/`, `:`, `%`) reaches the server as it is."""
        user = quote(self.postgres_user, safe="")
        password = quote(self.postgres_password.get_secret_value(), safe="")
        return f"postgresql+{driver}://{user}:{password}@{self.bind_host}:{self.postgres_port}/{database}"

    @property
    def config_database_url(self) -> str:
        """Where dashboards, widgets and alert rules live."""
        return self.database_url.get_secret_value() if self.database_url else self.postgres_url("lakepulse")

    @property
    def airflow_metadata_url(self) -> str:
        """Airflow's metadata database (a `postgresql+psycopg://` URL, credentials percent-encoded)."""
        if self.airflow_database_url:
            return self.airflow_database_url.get_secret_value()
        return self.postgres_url("airflow")

    def port_of(self, url: str) -> int:
        """Port of an http(s)://host:port URL."""
        return int(url.rsplit(":", 1)[1].split("/")[0])


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
