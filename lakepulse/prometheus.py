"""What every lakepulse HTTP service's `/metrics` answers: its registry, or the sum over its workers."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Exposition text and its content type; sums over worker processes when multiprocess mode is on."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Several uvicorn workers: each writes its own files, one scrape must see the sum.
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return generate_latest(merged), CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST
