"""The event contract of design.md section 2: the envelope, the core event types and their properties.

Validation works on the decoded JSON object (a dict) so that what reaches Kafka is the object exactly as
sent; the model decides acceptance and yields a short reason when it refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import core_schema

ORDER_STATUSES = (
    "placed",
    "confirmed",
    "in_kitchen",
    "ready_for_pickup",
    "picked_up",
    "delivered",
    "cancelled",
)
COURIER_STATUSES = ("assigned", "arrived_at_restaurant", "picked_up", "delivered")
CHANNELS = ("app", "web", "partner")
CORE_EVENT_TYPES = (
    "order_placed",
    "order_status_changed",
    "courier_status_changed",
    "rating_submitted",
    "page_view",
    "app_error",
)
# Fields the ingest service adds to every accepted event; everything else in a raw record was sent.
SERVER_FIELDS = ("received_at", "device_family")

TENANT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# RFC 3339 date-time: full date, time, and a mandatory zone (Z or +hh:mm).
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
RFC3339_REASON = "must be an RFC 3339 timestamp with a zone, e.g. 2024-05-01T12:30:00Z"
MAX_REASON_ERRORS = 3

Text = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
Identifier = Annotated[str, Field(strict=True, min_length=1, max_length=64)]
Money = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Rating = Annotated[int, Field(strict=True, ge=1, le=5)]


class _Rfc3339:
    """A datetime written as RFC 3339 text with a zone. Pydantic alone would also take epoch numbers and
    zone-less times; pattern and parse both run inside pydantic-core, without a call into Python."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        text = core_schema.custom_error_schema(
            core_schema.str_schema(pattern=RFC3339_PATTERN, strict=True),
            custom_error_type="rfc3339",
            custom_error_message=RFC3339_REASON,
        )
        # Text of the right shape that is no date (month 13, Feb 30) gets pydantic's own reason.
        return core_schema.chain_schema([text, handler(source)])


class _Properties(BaseModel):
    """Properties of a core event type: required fields are checked, extra fields pass through."""

    model_config = ConfigDict(extra="allow")


class OrderItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(extra="allow")

    item_id: Identifier
    name: Text
    category: Text
    quantity: Annotated[int, Field(strict=True, ge=1)]
    unit_price: Money


class OrderPlacedProperties(_Properties):
    order_id: Identifier
    user_id: Identifier
    amount: Money
    currency: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")]
    channel: Literal["app", "web", "partner"]
    country: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{2}$")]
    device: Text
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=200)]


class OrderStatusChangedProperties(_Properties):
    order_id: Identifier
    status: Literal["placed", "confirmed", "in_kitchen", "ready_for_pickup", "picked_up", "delivered", "cancelled"]


class CourierStatusChangedProperties(_Properties):
    courier_id: Identifier
    order_id: Identifier
    status: Literal["assigned", "arrived_at_restaurant", "picked_up", "delivered"]


class RatingSubmittedProperties(_Properties):
    order_id: Identifier
    user_id: Identifier
    food_rating: Rating
    delivery_rating: Rating


class PageViewProperties(_Properties):
    user_id: Identifier
    page: Text
    country: Annotated[str, Field(strict=True, pattern=r"^[A-Z]{2}$")]
    device: Text
    category: Text


class AppErrorProperties(_Properties):
    service: Text
    code: Annotated[str, Field(strict=True, min_length=1, max_length=100)]


class _Envelope(BaseModel):
    """Fields every event carries; unknown top-level fields are refused so the raw schema stays fixed."""

    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str | None, Field(strict=True, min_length=1, max_length=64)] = None
    tenant_id: Annotated[str, Field(strict=True, pattern=TENANT_ID_PATTERN)]
    occurred_at: Annotated[datetime, _Rfc3339]
    source: Annotated[str, Field(strict=True, min_length=1, max_length=100)]


class OrderPlaced(_Envelope):
    event_type: Literal["order_placed"]
    properties: OrderPlacedProperties


class OrderStatusChanged(_Envelope):
    event_type: Literal["order_status_changed"]
    properties: OrderStatusChangedProperties


class CourierStatusChanged(_Envelope):
    event_type: Literal["courier_status_changed"]
    properties: CourierStatusChangedProperties


class RatingSubmitted(_Envelope):
    event_type: Literal["rating_submitted"]
    properties: RatingSubmittedProperties


class PageView(_Envelope):
    event_type: Literal["page_view"]
    properties: PageViewProperties


class AppError(_Envelope):
    event_type: Literal["app_error"]
    properties: AppErrorProperties


class OtherEvent(_Envelope):
    """Any event type outside the core set: envelope rules only, properties free-form."""

    event_type: Annotated[str, Field(strict=True, pattern=EVENT_TYPE_PATTERN)]
    properties: dict[str, Any] = Field(default_factory=dict)


def _event_kind(value: Any) -> str:
    """Discriminator: the core event type named in the event, or 'other'."""
    event_type = value.get("event_type") if isinstance(value, dict) else getattr(value, "event_type", None)
    return event_type if event_type in CORE_EVENT_TYPES else "other"


Event = Annotated[
    Annotated[OrderPlaced, Tag("order_placed")]
    | Annotated[OrderStatusChanged, Tag("order_status_changed")]
    | Annotated[CourierStatusChanged, Tag("courier_status_changed")]
    | Annotated[RatingSubmitted, Tag("rating_submitted")]
    | Annotated[PageView, Tag("page_view")]
    | Annotated[AppError, Tag("app_error")]
    | Annotated[OtherEvent, Tag("other")],
    Discriminator(_event_kind),
]
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)
# The core types alone, told apart by the `event_type` field itself: pydantic finds the tag in the JSON
# without calling back into Python (`_event_kind` would turn every event into Python objects first).
CORE_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        OrderPlaced | OrderStatusChanged | CourierStatusChanged | RatingSubmitted | PageView | AppError,
        Field(discriminator="event_type"),
    ]
)


class InvalidEvent(ValueError):
    """An event the contract refuses; `reason` is a short sentence meant for the producer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def rejection_reason(error: ValidationError) -> str:
    """A short reason from a pydantic error: 'field.path: message' for the first few problems."""
    parts = []
    for detail in error.errors(include_url=False)[:MAX_REASON_ERRORS]:
        # The first location element is the union tag (e.g. 'order_placed'); the producer never wrote it.
        location = [str(part) for part in detail["loc"][1:]]
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{'.'.join(location) or 'event'}: {message}")
    extra = error.error_count() - MAX_REASON_ERRORS
    if extra > 0:
        parts.append(f"and {extra} more")
    return "; ".join(parts)


def validate_event(raw: Any) -> Any:
    """Validate one decoded JSON value against the contract; the typed event, or InvalidEvent."""
    if not isinstance(raw, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(raw).__name__}")
    try:
        return EVENT_ADAPTER.validate_python(raw)
    except ValidationError as error:
        raise InvalidEvent(rejection_reason(error)) from error


def validate_event_json(data: bytes) -> Any:
    """Validate one JSON document straight from its bytes, in one pass through pydantic's parser for the
    common, valid case; otherwise decode strictly and give `validate_event`'s reason.

    Numbers beyond a double or a 64-bit integer are valid JSON and pass here as sent; JSON bodies, decoded
    whole by orjson, refuse them.
    """
    # NaN and Infinity: pydantic's parser takes these non-JSON literals; the strict way refuses them.
    if b"NaN" not in data and b"Infinity" not in data:
        try:
            return CORE_EVENT_ADAPTER.validate_json(data)  # nearly all traffic: a valid core event
        except ValidationError as error:
            other_type = error.errors(include_url=False)[0]["type"] == "union_tag_invalid"
        if other_type:  # an event type outside the core set: envelope rules only
            try:
                return EVENT_ADAPTER.validate_json(data)
            except ValidationError:
                pass
        # An invalid event: the strict way below finds the reason, worded as for JSON bodies.
    try:
        value = orjson.loads(data)
        orjson.dumps(value)  # what cannot be written back (nesting over 254 levels, huge integers) is refused
    except orjson.JSONDecodeError as error:
        raise InvalidEvent(f"line is not valid JSON: {error}") from error
    except orjson.JSONEncodeError as error:
        raise InvalidEvent(f"event cannot be stored as JSON: {error}") from error
    return validate_event(value)


def rfc3339_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of one event (used for the OpenAPI description of the ingest API)."""
    return EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")


# Reason codes of the per-event checks that need the server's clock or the broker's limit (the contract
# alone cannot decide them). Each reason starts with its code, so the DLQ can be counted by code.
OCCURRED_AT_IN_FUTURE = "occurred_at_in_future"
OCCURRED_AT_TOO_OLD = "occurred_at_too_old"
EVENT_TOO_LARGE = "event_too_large"


def span_text(seconds: float) -> str:
    """A duration for a reason, in the largest unit that keeps it readable: '301 s', '12 min', '5 h', '3.2 days'."""
    seconds = abs(seconds)
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.1f} days"


def _as_written(moment: datetime) -> str:
    """RFC 3339 in UTC, or as given where UTC is outside the years datetime holds (0001-01-01T00:00:00+01:00)."""
    try:
        return rfc3339_utc(moment)
    except OverflowError:
        return moment.isoformat()


def event_time_problem(
    occurred_at: datetime, now: datetime, max_future_skew_s: float, max_age_days: float | None
) -> str | None:
    """Why an event at `occurred_at` is refused at server time `now` (both aware), or None when it is plausible:
    more than `max_future_skew_s` ahead of `now`, or more than `max_age_days` behind it (None: no horizon).

    A future event would move every watermark (and blind the live layer for everybody); a very old one would
    be written into history far behind the seam."""
    ahead_s = (occurred_at - now).total_seconds()
    if ahead_s > max_future_skew_s:
        return (
            f"{OCCURRED_AT_IN_FUTURE}: occurred_at {_as_written(occurred_at)} is {span_text(ahead_s)} ahead of the "
            f"server clock ({rfc3339_utc(now)}); at most {max_future_skew_s:g} s is allowed: check the producer's clock"
        )
    if max_age_days is not None and -ahead_s > max_age_days * 86400:
        return (
            f"{OCCURRED_AT_TOO_OLD}: occurred_at {_as_written(occurred_at)} is {span_text(ahead_s)} old; events "
            f"older than {max_age_days:g} days are refused"
        )
    return None


def event_too_large(size: int, max_bytes: int) -> str:
    """The reason an event of `size` serialised bytes is refused when at most `max_bytes` are allowed."""
    return f"{EVENT_TOO_LARGE}: the event is {size:,} bytes serialised; at most {max_bytes:,} bytes are allowed"
