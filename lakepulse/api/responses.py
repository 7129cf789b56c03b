"""JSON answers of the metrics API, serialised with orjson (a day of minute windows is ~1,500 objects)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; tenant data is never stored by shared caches."""
    return json_bytes_response(orjson.dumps(content), status, headers)


def json_bytes_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A response of JSON already serialised."""
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store", **(headers or {})})


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error body `{"detail": ...}`."""
    return json_response({"detail": detail}, status, headers)
