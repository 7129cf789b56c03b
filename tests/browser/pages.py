"""What the browser tests share: events they post, signing in through the page's form, reading widgets, and a
second viewer of the live stream (to tell the pipeline's delay from the page's)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import orjson
from playwright.sync_api import ConsoleMessage, Page

from tests.stack_events import rfc3339

TIMEZONE = "Europe/Berlin"
STATUSES = ("placed", "confirmed", "in_kitchen", "ready_for_pickup", "picked_up", "delivered", "cancelled")


def event(tenant: str, event_type: str, at: datetime, properties: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": f"web-{uuid.uuid4().hex}", "tenant_id": tenant, "event_type": event_type,
            "occurred_at": rfc3339(at), "source": "web-test", "properties": properties}


def status(tenant: str, order_id: str, step: str, at: datetime) -> dict[str, Any]:
    return event(tenant, "order_status_changed", at, {"order_id": order_id, "status": step})


def courier(tenant: str, courier_id: str, order_id: str, at: datetime) -> dict[str, Any]:
    return event(tenant, "courier_status_changed", at,
                 {"courier_id": courier_id, "order_id": order_id, "status": "arrived_at_restaurant"})


def rating(tenant: str, order_id: str, food: int, delivery: int, at: datetime) -> dict[str, Any]:
    return event(tenant, "rating_submitted", at,
                 {"order_id": order_id, "user_id": "u-web", "food_rating": food, "delivery_rating": delivery})


def watch_errors(page: Page) -> list[str]:
    """Console errors and uncaught exceptions of `page` (a CSP violation is a console error)."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def sign_in(page: Page, url: str, tenant: str) -> None:
    """Sign in through the form as restaurant `tenant` and wait until the page has read its data."""
    page.goto(f"{url}/")
    page.get_by_label("A restaurant").check()
    page.get_by_label("Restaurant (tenant id)").fill(tenant)
    page.get_by_label("Time zone").fill(TIMEZONE)
    page.get_by_label("Currency").fill("EUR")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/app/restaurant\?"))
    page.wait_for_selector("#restaurant[data-loaded='true']")


def raw(page: Page, selector: str) -> str:
    value = page.locator(selector).get_attribute("data-raw")
    assert value is not None, selector
    return value


def api(page: Page, url: str, path: str, **params: Any) -> tuple[int, Any]:
    """A read through the page's own session (its cookie): status and body."""
    response = page.request.get(f"{url}{path}", params=params)
    return response.status, response.json()


# Installed in the page: records, from a MutationObserver, when each watched element first shows what a test
# waits for (Date.now(), the same clock as the test's time.time()). A watch is [name, selector, data-raw wanted]
# (null: the element exists).
WATCH_JS = """(watches) => {
  const seen = window.__lakepulseSeen || (window.__lakepulseSeen = {});
  const check = () => {
    for (const [name, selector, wanted] of watches) {
      if (name in seen) continue;
      const element = document.querySelector(selector);
      if (element && (wanted == null || element.dataset.raw === wanted)) seen[name] = Date.now();
    }
  };
  check();
  new MutationObserver(check).observe(document.getElementById('restaurant'),
    { subtree: true, childList: true, attributes: true, characterData: true });
  window.__lakepulseMark = 'no reload since';
}"""


def watch(page: Page, *watches: tuple[str, str, str | None]) -> None:
    """Start recording when each watched element shows its value (see WATCH_JS)."""
    page.evaluate(WATCH_JS, [list(w) for w in watches])


def seen(page: Page) -> dict[str, float]:
    """Watch name → when the page first showed it (epoch ms)."""
    return dict(page.evaluate("window.__lakepulseSeen || {}"))


def wait_seen(page: Page, names: set[str], timeout_s: float, what: str) -> dict[str, float]:
    """Wait (bounded) until the page showed every watched name; fail naming what is missing."""
    deadline = time.monotonic() + timeout_s
    while not names <= set(shown := seen(page)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the page never showed {sorted(names - set(shown))} "
                                 f"within {timeout_s:.0f}s (showed {sorted(shown)})")
        time.sleep(0.1)
    return shown


def not_reloaded(page: Page) -> bool:
    """Whether the page is still the document `watch` marked (no reload, no navigation)."""
    return bool(page.evaluate("window.__lakepulseMark === 'no reload since'"))


class StreamWatcher:
    """Another viewer of a tenant's live stream (GET /v1/stream with a bearer token), in a thread: every event
    with the time it arrived (epoch ms)."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.opened = threading.Event()
        self.status: int | None = None
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, args=(url, token), daemon=True)
        self._thread.start()
        assert self.opened.wait(30) and self.status == 200, self.status

    def _read(self, url: str, token: str) -> None:
        try:
            with self._client.stream("GET", f"{url}/v1/stream",
                                     headers={"Authorization": f"Bearer {token}"}) as response:
                self.status = response.status_code
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                self.opened.set()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("data: "):
                        self.events.append((time.time() * 1000, orjson.loads(line[6:])))
        except Exception:  # noqa: BLE001 - closed from the test's thread (close), or the server went away
            pass
        finally:
            self.opened.set()

    def first(self, matches: Callable[[dict[str, Any]], bool]) -> tuple[float, dict[str, Any]] | None:
        """The first event that `matches`, with its arrival time; None before one came."""
        return next(((at, e) for at, e in list(self.events) if matches(e)), None)

    def close(self) -> None:
        """Stop reading and close the connection (the server forgets the viewer)."""
        self._stop.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
        self._thread.join(10)
        self._client.close()
