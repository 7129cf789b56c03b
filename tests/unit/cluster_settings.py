"""The settings a cluster deployment must set (real secrets, the identity provider's keys, a managed
PostgreSQL), shared by the tests that build cluster-mode Settings."""

from __future__ import annotations

from typing import Any

CLUSTER_KWARGS: dict[str, Any] = {
    "mode": "cluster",
    "s3_secret_key": "a-real-s3-secret",
    "auth_jwt_secret": "r" * 40,
    "auth_jwks_url": "https://idp.example.test/.well-known/jwks.json",
    "database_url": "postgresql+psycopg://lakepulse:real@db.example.test/lakepulse",
    "airflow_database_url": "postgresql+psycopg://airflow:real@db.example.test/airflow",
}
