"""A webhook endpoint on 127.0.0.1 for the alert tests: records every attempt and, with the Idempotency-Key, every
delivery it accepted; the first `refuse_first` attempts get a 503 (to exercise the sender's retries)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self, refuse_first: int = 0, wait_s: float = 60) -> None:
        self.attempts: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self.wait_s = wait_s
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.attempts.append(body)
                ok = len(receiver.attempts) > refuse_first
                if ok:
                    receiver.accepted.append({**body, "key": self.headers["Idempotency-Key"]})
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int) -> list[dict[str, Any]]:
        """The accepted deliveries once there are `n` (bounded wait; fewer when they did not come)."""
        deadline = time.monotonic() + self.wait_s
        while len(self.accepted) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.accepted


@contextmanager
def webhook_receiver(refuse_first: int = 0) -> Iterator[WebhookReceiver]:
    """A receiver for the block, shut down after it."""
    receiver = WebhookReceiver(refuse_first)
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
