"""Webhook URL guard: which URLs the alert service may call, and the re-check at delivery time.

No test here touches the network: literals need no lookup, "localhost" resolves locally, and other names
are answered by a stub of `socket.getaddrinfo`.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from lakepulse.alerts.rules import AlertEvent
from lakepulse.alerts.service import post_webhook
from lakepulse.alerts.webhooks import check_webhook_url, pinned, webhook_addresses

PUBLIC = "93.184.216.34"


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Answer getaddrinfo from `answers` (a missing name does not resolve); returns the names looked up."""
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port, 0, 0) if ":" in a else (a, port)) for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://10.0.0.1/hook", "private"),
    ("http://192.168.1.20/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]:9000/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://[::ffff:10.0.0.1]/hook", "private"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[fc00::1]/hook", "private"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("http://100.64.0.1/hook", "not a globally routable"),
    ("http://[2002:7f00:1::]/hook", "loopback"),  # 6to4 carrying 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/hook", "link-local"),  # NAT64 carrying 169.254.169.254
    ("http://localhost:8000/hook", "resolves to 127.0.0.1, a loopback address"),
])
def test_internal_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_webhook_url(url, allow_private=False)
    check_webhook_url(url, allow_private=True)  # the setting lets each of them through


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://93.184.216.34/hook", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("93.184.216.34/hook", "http or https"),
    ("http:///hook", "no host"),
    ("http://[::1/hook", "not a valid URL"),
])
def test_only_http_urls_with_a_host(url: str, reason: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(ValueError, match=reason):
            check_webhook_url(url, allow_private)


def test_public_literals_pass_without_a_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {})
    check_webhook_url(f"http://{PUBLIC}/hook", allow_private=False)
    check_webhook_url("https://[2606:4700:4700::1111]:8443/hook", allow_private=False)
    check_webhook_url(f"https://[::ffff:{PUBLIC}]/hook", allow_private=False)
    assert asked == []


def test_names_are_judged_by_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC, "2606:2800:220:1::248"],
                                   "sneaky.example.com": [PUBLIC, "10.1.2.3"],
                                   "metadata.example.com": ["169.254.169.254"]})
    assert [str(a) for a in webhook_addresses("https://hooks.example.com/x", False)] == [
        PUBLIC, "2606:2800:220:1::248"]
    with pytest.raises(ValueError, match=r"sneaky.example.com resolves to 10.1.2.3, a private address"):
        check_webhook_url("https://sneaky.example.com/x", allow_private=False)
    with pytest.raises(ValueError, match="link-local"):
        check_webhook_url("http://metadata.example.com/", allow_private=False)
    with pytest.raises(ValueError, match="does not resolve"):
        check_webhook_url("https://nowhere.example.com/x", allow_private=False)
    assert asked == ["hooks.example.com", "sneaky.example.com", "metadata.example.com", "nowhere.example.com"]
    check_webhook_url("https://nowhere.example.com/x", allow_private=True)
    assert len(asked) == 4  # allowing private addresses resolves nothing


def test_delivery_connects_to_the_vetted_address() -> None:
    url, headers, extensions = pinned(httpx.URL("https://hooks.example.com:8443/a?b=1"),
                                      webhook_addresses(f"http://{PUBLIC}/", False)[0])
    assert (str(url), headers, extensions) == (f"https://{PUBLIC}:8443/a?b=1", {"Host": "hooks.example.com:8443"},
                                               {"sni_hostname": "hooks.example.com"})
    url, headers, extensions = pinned(httpx.URL("http://hooks.example.com/a"),
                                      webhook_addresses("http://[2606:4700::1111]/", False)[0])
    assert (str(url), headers, extensions) == ("http://[2606:4700::1111]/a", {"Host": "hooks.example.com"}, {})
    literal = httpx.URL(f"http://{PUBLIC}/a")
    assert pinned(literal, None) == pinned(literal, webhook_addresses(str(literal), False)[0]) == (literal, {}, {})


def event() -> AlertEvent:
    return AlertEvent(id="r:t1:1:firing", breach_id="r:t1:1", rule_id="r", tenant_id="t1", metric="orders_placed",
                      status="firing", reason="breached", value=6.0, threshold=5.0, condition="gt",
                      window_minutes=1, window_end_ms=60_000, anomaly=False, baseline_mean=None,
                      baseline_std=None, dimensions={}, channel="http://10.0.0.1/hook")


def test_delivery_rechecks_the_url_and_never_connects_to_a_refused_one(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_client(*_: Any, **__: Any) -> None:
        raise AssertionError("a refused webhook must not be called")

    monkeypatch.setattr(httpx, "Client", no_client)
    delivery = post_webhook("http://10.0.0.1/hook", event(), attempts=3, backoff_s=0, timeout_s=1)
    assert delivery.status == "refused" and "10.0.0.1 is a private address" in delivery.detail
    # DNS changed since the rule was accepted: the name now points inside.
    fake_dns(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    delivery = post_webhook("https://hooks.example.com/x", event(), attempts=3, backoff_s=0, timeout_s=1,
                            allow_private=False)
    assert delivery.status == "refused" and "resolves to 127.0.0.1" in delivery.detail


def test_delivery_posts_to_the_pinned_address_with_the_event_key(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC]})
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503 if len(seen) == 1 else 200)

    real_client = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(handler), **kw))
    delivery = post_webhook("https://hooks.example.com/x", event(), attempts=3, backoff_s=0, timeout_s=1)
    assert delivery.status == "delivered" and len(seen) == 2
    request = seen[-1]
    assert (str(request.url), request.headers["Host"], request.headers["Idempotency-Key"]) == (
        f"https://{PUBLIC}/x", "hooks.example.com", "r:t1:1:firing")
    assert request.extensions["sni_hostname"] == "hooks.example.com"
