"""What the end-to-end and API tests send through the running ingest API, and how they wait for it to show."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from lakepulse.auth.tokens import mint_token
from lakepulse.settings import Settings


def hours_ago(hours: int = 3) -> datetime:
    """A whole hour in the recent past: event times the ingest API accepts (within its age horizon and not ahead
    of its clock) whenever the tests run, late for the speed layer, so they count nowhere a test looks."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)


def rfc3339(moment: datetime) -> str:
    """An aware time as the contract writes it (UTC, Z)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def order(tenant: str, at: datetime, amount: float, user: str | None = None, device: str = "ios",
          source: str = "stack-test") -> dict[str, Any]:
    """A valid order_placed event of the contract (a fresh event id and order id)."""
    order_id = uuid.uuid4().hex[:12]
    return {
        "event_id": f"{source}-{uuid.uuid4().hex}", "tenant_id": tenant, "event_type": "order_placed",
        "occurred_at": rfc3339(at), "source": source,
        "properties": {"order_id": order_id, "user_id": user or f"u-{order_id[:4]}", "amount": amount,
                       "currency": "EUR", "channel": "app", "country": "DE", "device": device,
                       "items": [{"item_id": "i-1", "name": "soup", "category": "soups", "quantity": 1,
                                  "unit_price": amount}]},
    }


def post(settings: Settings, events: list[Any]) -> dict[str, Any]:
    """POST one NDJSON batch (dicts, or raw bytes lines) to the running ingest API with a local admin token
    (the tests write several tenants); its per-event answer."""
    body = b"\n".join(e if isinstance(e, bytes) else orjson.dumps(e) for e in events)
    token = mint_token(settings, role="admin", ttl=timedelta(minutes=10), subject="stack-test")
    response = httpx.post(f"http://{settings.bind_host}:{settings.ingest_port}/v1/events", content=body,
                          headers={"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"},
                          timeout=30)
    assert response.status_code == 202, response.text
    return dict(response.json())


def wait_for(seen: Callable[[], Any], wanted: Any, timeout: float, what: str, interval: float = 1.0) -> None:
    """Poll until `seen()` equals `wanted` (a bound, not a timing assertion; fails showing the last value)."""
    deadline = time.monotonic() + timeout
    while (last := seen()) != wanted:
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {last!r} after {timeout:.0f}s, wanted {wanted!r}")
        time.sleep(interval)
