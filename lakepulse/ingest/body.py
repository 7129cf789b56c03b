"""Request bodies → a list of decoded items (pure functions, no I/O)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

JSON_TYPES = ("application/json", "")
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")


class BodyError(ValueError):
    """The body as a whole cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of one request."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_decoded_bytes: int = 64 * 1024 * 1024
    max_events: int = 20_000


@dataclass(slots=True)
class Item:
    """One event of the body as JSON text: an NDJSON line exactly as sent, or an array element re-encoded.

    Items stay undecoded: validation parses each once, and accepted ones are forwarded byte for byte.
    `error` says why an array element could not be encoded at all.
    """

    line: bytes
    error: str | None = None


def line_items(data: bytes) -> list[Item]:
    """The non-blank lines of an NDJSON document, stripped, as items."""
    return [Item(stripped) for line in data.splitlines() if (stripped := line.strip())]


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, lower-cased."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_content(body: bytes, content_encoding: str | None, limits: Limits) -> bytes:
    """Undo Content-Encoding (identity or gzip), refusing bodies that inflate beyond the limit."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        # Inflate at most one byte beyond the limit so a zip bomb costs bounded memory.
        data = inflater.decompress(body, limits.max_decoded_bytes + 1)
    except zlib.error as error:
        raise BodyError(400, f"body is not valid gzip: {error}") from error
    if len(data) > limits.max_decoded_bytes:
        raise BodyError(413, f"decompressed body exceeds {limits.max_decoded_bytes} bytes")
    if not inflater.eof:
        raise BodyError(400, "body is not valid gzip: truncated stream")
    return data


def split_body(data: bytes, content_type: str | None, limits: Limits) -> list[Item]:
    """Decode a JSON object, a JSON array or NDJSON into items; a broken NDJSON line becomes a bad item."""
    kind = media_type(content_type)
    if kind in NDJSON_TYPES:
        items = line_items(data)
    elif kind in JSON_TYPES:
        items = _json_items(data)
    else:
        raise BodyError(415, f"unsupported Content-Type {kind!r}; use application/json or application/x-ndjson")
    if not items:
        raise BodyError(400, "body holds no events")
    if len(items) > limits.max_events:
        raise BodyError(413, f"{len(items)} events in one request; the limit is {limits.max_events}")
    return items


def _json_items(data: bytes) -> list[Item]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise BodyError(400, f"body is not valid JSON: {error}") from error
    if isinstance(value, dict):
        return [_encoded(value)]
    if isinstance(value, list):
        return [_encoded(element) for element in value]
    raise BodyError(400, "body must be a JSON object, a JSON array of objects, or NDJSON")


def _encoded(value: Any) -> Item:
    try:
        return Item(orjson.dumps(value))
    except orjson.JSONEncodeError as error:
        return Item(b"", error=f"event cannot be stored as JSON: {error}")
