"""The event contract: what it accepts and the reasons it gives when it refuses."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakepulse.events import (
    InvalidEvent,
    OrderPlaced,
    OtherEvent,
    RatingSubmitted,
    validate_event,
    validate_event_json,
)


def order_placed() -> dict[str, Any]:
    return {
        "event_id": "evt-1",
        "tenant_id": "rest_0001",
        "event_type": "order_placed",
        "occurred_at": "2024-05-01T12:30:00.250+02:00",
        "source": "ios-app",
        "properties": {
            "order_id": "o-1",
            "user_id": "u-1",
            "amount": 23.5,
            "currency": "EUR",
            "channel": "app",
            "country": "DE",
            "device": "ios",
            "items": [
                {"item_id": "i-1", "name": "Pizza", "category": "pizza", "quantity": 2, "unit_price": 11.75}
            ],
        },
    }


def test_valid_order_placed_is_typed_and_keeps_values() -> None:
    event = validate_event(order_placed())
    assert isinstance(event, OrderPlaced)
    assert event.properties.amount == 23.5
    assert event.properties.items[0].quantity == 2
    assert event.occurred_at.utcoffset().total_seconds() == 7200


def test_event_id_is_optional() -> None:
    raw = order_placed()
    del raw["event_id"]
    assert validate_event(raw).event_id is None


def test_other_event_types_need_only_the_envelope() -> None:
    raw = {
        "tenant_id": "t",
        "event_type": "loyalty_points",
        "occurred_at": "2024-05-01T00:00:00Z",
        "source": "x",
    }
    event = validate_event(raw)
    assert isinstance(event, OtherEvent)
    assert event.properties == {}


def test_extra_properties_pass_through() -> None:
    raw = order_placed()
    raw["properties"]["tip"] = 2
    assert validate_event(raw).properties.model_extra == {"tip": 2}


def mutate(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(order_placed())
    *parents, last = path.split(".")
    target: Any = raw
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return raw


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("tenant_id", "rest 1", "tenant_id: String should match pattern '^[A-Za-z0-9_-]{1,64}$'"),
        ("tenant_id", "x" * 65, "tenant_id: String should match pattern '^[A-Za-z0-9_-]{1,64}$'"),
        ("tenant_id", DELETE, "tenant_id: Field required"),
        ("event_id", "e" * 65, "event_id: String should have at most 64 characters"),
        ("source", "s" * 101, "source: String should have at most 100 characters"),
        ("occurred_at", "2024-05-01T12:30:00", "occurred_at: must be an RFC 3339 timestamp with a zone"),
        ("occurred_at", 1714566600, "occurred_at: must be an RFC 3339 timestamp with a zone"),
        ("occurred_at", "2024-13-01T12:30:00Z", "occurred_at: Input should be a valid datetime or date, month value"),
        ("occurred_at", "2024-05-01T12:30:00+00:60", "occurred_at: Input should be a valid datetime or date"),
        ("properties.amount", -0.01, "properties.amount: Input should be greater than or equal to 0"),
        ("properties.amount", "12.00", "properties.amount: Input should be a valid number"),
        ("properties.channel", "fax", "properties.channel: Input should be 'app', 'web' or 'partner'"),
        (
            "properties.items",
            [],
            "properties.items: List should have at least 1 item after validation, not 0",
        ),
        (
            "properties.items.0.quantity",
            0,
            "properties.items.0.quantity: Input should be greater than or equal to 1",
        ),
        (
            "properties.items.0.unit_price",
            -1,
            "properties.items.0.unit_price: Input should be greater than or equal",
        ),
        ("properties.order_id", DELETE, "properties.order_id: Field required"),
        ("received_at", "2024-05-01T12:30:00Z", "received_at: unknown field"),
        (
            "properties",
            None,
            "properties: Input should be a valid dictionary or instance of OrderPlacedProperties",
        ),
    ],
)
def test_refusals_name_the_field_and_the_rule(path: str, value: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        validate_event(mutate(path, value))
    assert refused.value.reason.startswith(reason)
    assert len(refused.value.reason) < 200


@pytest.mark.parametrize(
    ("event_type", "properties", "reason"),
    [
        (
            "order_status_changed",
            {"order_id": "o", "status": "eaten"},
            "properties.status: Input should be 'placed'",
        ),
        (
            "courier_status_changed",
            {"courier_id": "c", "order_id": "o", "status": "lost"},
            "properties.status:",
        ),
        (
            "rating_submitted",
            {"order_id": "o", "user_id": "u", "food_rating": 6, "delivery_rating": 5},
            "properties.food_rating: Input should be less than or equal to 5",
        ),
        (
            "rating_submitted",
            {"order_id": "o", "user_id": "u", "food_rating": 4.5, "delivery_rating": 5},
            "properties.food_rating: Input should be a valid integer",
        ),
        (
            "page_view",
            {"user_id": "u", "page": "menu", "country": "germany", "device": "ios", "category": "pizza"},
            "properties.country: String should match pattern",
        ),
        ("app_error", {"service": "checkout"}, "properties.code: Field required"),
    ],
)
def test_core_types_check_their_properties(event_type: str, properties: dict[str, Any], reason: str) -> None:
    raw = {"tenant_id": "t", "event_type": event_type, "occurred_at": "2024-05-01T00:00:00Z", "source": "x"}
    with pytest.raises(InvalidEvent) as refused:
        validate_event({**raw, "properties": properties})
    assert refused.value.reason.startswith(reason)


def test_rating_within_range_is_accepted() -> None:
    raw = {
        "tenant_id": "t",
        "event_type": "rating_submitted",
        "occurred_at": "2024-05-01T00:00:00Z",
        "source": "x",
        "properties": {"order_id": "o", "user_id": "u", "food_rating": 1, "delivery_rating": 5},
    }
    assert isinstance(validate_event(raw), RatingSubmitted)


def test_non_object_is_refused_with_its_type() -> None:
    with pytest.raises(InvalidEvent, match="event must be a JSON object, got list"):
        validate_event([1, 2])


def test_many_problems_are_summarised() -> None:
    with pytest.raises(InvalidEvent) as refused:
        validate_event({"event_type": "order_placed", "properties": {}})
    assert refused.value.reason.count(";") == 3
    assert refused.value.reason.endswith("more")


def _reference_occurred_at(text: str) -> datetime | None:
    """The contract's rule written independently: RFC 3339 shape, a real date and time, a zone of at most
    23:59 (Python's own parser would also take minutes 60-99 in the zone)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", text, re.ASCII):
        return None
    if text[-1] not in "Zz" and int(text[-2:]) > 59:
        return None
    try:
        return datetime.fromisoformat(text.upper().replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        return None


def _two_digits(high: int) -> st.SearchStrategy[str]:
    return st.integers(0, high).map(lambda n: f"{n:02d}")


@settings(max_examples=3000, deadline=None)
@given(
    date=st.tuples(st.integers(0, 9999).map(lambda n: f"{n:04d}"), _two_digits(13), _two_digits(32)),
    time=st.tuples(_two_digits(25), _two_digits(61), _two_digits(61)),
    sep=st.sampled_from("Tt "),
    fraction=st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9).map(lambda f: "." + f)),
    zone=st.one_of(
        st.sampled_from("Zz"),
        st.tuples(st.sampled_from("+-"), _two_digits(25), _two_digits(61)).map(lambda z: f"{z[0]}{z[1]}:{z[2]}"),
    ),
)
def test_occurred_at_accepts_exactly_rfc3339_times(date, time, sep, fraction, zone) -> None:
    text = "-".join(date) + sep + ":".join(time) + fraction + zone
    event = {"tenant_id": "t1", "event_type": "custom", "source": "test", "occurred_at": text}
    expected = _reference_occurred_at(text)
    try:
        accepted = validate_event_json(orjson.dumps(event)).occurred_at
    except InvalidEvent:
        accepted = None
    assert accepted == expected
