"""The stack's own metrics API service (uvicorn, `api_workers` processes), as `lakepulse up` starts it: its
workers share computed answers through their private directory, only under the exact key (path, authorised
tenant, parameters), and a tenant's token still reads only its tenant there."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest

from lakepulse.api.cache import request_key
from lakepulse.auth.tokens import mint_token
from lakepulse.platform.components.apps import answers_dir
from lakepulse.platform.components.base import Context

pytestmark = [pytest.mark.integration, pytest.mark.needs("api", "pinot", "trino", "minio")]

TENANTS = ("demo-rest-0001", "demo-rest-0002")


def live_read(base: str, token: str, tenant: str | None = None) -> httpx.Response:
    # A new connection per request, so that the requests land on the service's different workers.
    with httpx.Client(base_url=base, timeout=30) as client:
        params = {"tenant": tenant} if tenant else {}
        return client.get("/v1/live", params=params, headers={"Authorization": f"Bearer {token}"})


def test_the_services_workers_publish_answers_for_their_own_key_only(stack: Context) -> None:
    settings = stack.settings
    base = f"http://{settings.bind_host}:{settings.api_port}"
    shared = answers_dir(stack)
    assert shared.is_dir() and oct(shared.stat().st_mode & 0o777) == "0o700"
    tokens = {t: mint_token(settings, tenant=t, ttl=timedelta(minutes=10)) for t in TENANTS}
    for tenant, token in tokens.items():
        answer = live_read(base, token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["tenant"] == tenant
    # Each answer is published under its own key, and the file of one tenant's key holds that tenant's answer.
    keys = {t: repr(request_key("/v1/live", t, [])).encode() for t in TENANTS}
    deadline = time.monotonic() + 10
    found: dict[str, bytes] = {}
    while len(found) < len(TENANTS) and time.monotonic() < deadline:
        for path in shared.iterdir():
            data = path.read_bytes() if path.is_file() and not path.name.startswith(".") else b""
            found.update({t: data for t, key in keys.items() if key in data})
        time.sleep(0.2)
    assert set(found) == set(TENANTS), f"no shared answer for {set(TENANTS) - set(found)} in {shared}"
    for tenant, data in found.items():
        other = next(t for t in TENANTS if t != tenant)
        answer = data.split(keys[tenant], 1)[1]
        assert f'"tenant":"{tenant}"'.encode() in answer and other.encode() not in answer
    # A tenant's token naming another tenant is refused by every worker, though that tenant's answer is cached.
    for _ in range(6):
        refused = live_read(base, tokens[TENANTS[0]], tenant=TENANTS[1])
        assert refused.status_code == 403 and b"funnel" not in refused.content
