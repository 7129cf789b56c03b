"""Body decoding and per-event processing of the ingest service (pure functions)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from lakepulse.events import rfc3339_utc
from lakepulse.ingest.body import BodyError, Limits, decode_content, split_body
from lakepulse.ingest.processing import EventRules, device_family, process_items

EVENT = {"tenant_id": "t1", "event_type": "signup", "occurred_at": "2024-05-01T00:00:00Z", "source": "web"}
LIMITS = Limits(max_body_bytes=10_000, max_decoded_bytes=20_000, max_events=3)


def test_single_object_array_and_ndjson_give_the_same_items() -> None:
    line = orjson.dumps(EVENT)
    single = split_body(line, "application/json", LIMITS)
    array = split_body(orjson.dumps([EVENT, EVENT]), "application/json; charset=utf-8", LIMITS)
    ndjson = split_body(line + b"\n\n" + line + b"\r\n", "application/x-ndjson", LIMITS)
    # Items are JSON text: NDJSON lines as sent (stripped), array elements re-encoded.
    assert [item.line for item in single] == [line]
    assert [item.line for item in array] == [line, line]
    assert [item.line for item in ndjson] == [line, line]


def test_broken_ndjson_line_becomes_a_rejected_event_not_a_bad_body() -> None:
    items = split_body(orjson.dumps(EVENT) + b'\n{"tenant_id": "t1", \n', "application/x-ndjson", LIMITS)
    assert [item.line for item in items] == [orjson.dumps(EVENT), b'{"tenant_id": "t1",']
    batch = process_items(items, datetime.now(UTC), None)
    assert [result.status for result in batch.results] == ["accepted", "rejected"]
    assert (batch.results[1].reason or "").startswith("line is not valid JSON")


def test_accepted_lines_are_forwarded_byte_for_byte_plus_server_fields() -> None:
    line = b'{ "tenant_id":"t1", "event_id":"e-1","event_type":"signup","occurred_at":"2024-05-01T00:00:00Z",'
    line += b'"source":"web","properties":{"price":1.10,"name":"caf\\u00e9"} }'
    batch = process_items(split_body(line, "application/x-ndjson", LIMITS), datetime.now(UTC), None)
    value = batch.raw_records[0].value
    assert value.startswith(line[:-1])
    assert orjson.loads(value)["properties"] == {"price": 1.1, "name": "café"}
    assert set(orjson.loads(value)) - set(orjson.loads(line)) == {"received_at", "device_family"}


OUT_OF_RANGE_NUMBERS = (b"1e400", b"12345678901234567890123")
RECEIVED = datetime(2024, 5, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "properties",
    [b"NaN", b"-Infinity", *OUT_OF_RANGE_NUMBERS, b"1E-400", b"-9223372036854775808", b"01", b"{}"]
    + [b"[" * depth + b"]" * depth for depth in (150, 220, 300)],
)
def test_lines_and_json_bodies_accept_and_refuse_the_same_events(properties: bytes) -> None:
    line = b'{"tenant_id":"t1","occurred_at":"2024-05-01T00:00:00Z","source":"web","event_type":"signup",'
    line += b'"event_id":"e-1","properties":{"p":' + properties + b"}}"
    as_line = process_items(split_body(line, "application/x-ndjson", LIMITS), RECEIVED, None)
    try:
        as_body = process_items(split_body(b"[" + line + b"]", "application/json", LIMITS), RECEIVED, None)
    except BodyError:  # orjson refuses the whole body
        as_body = None
    if as_body is None or as_body.results[0].status == "rejected":
        # A line is never stricter than a body; it only passes numbers orjson cannot hold (still valid JSON).
        assert as_line.results[0].status == "rejected" or properties in OUT_OF_RANGE_NUMBERS
        return
    assert as_line.results[0].status == "accepted"
    assert [orjson.loads(r.value) for r in as_line.raw_records] == [orjson.loads(r.value) for r in as_body.raw_records]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "body is not valid JSON"),
        (b"42", "application/json", 400, "body must be a JSON object"),
        (b"[]", "application/json", 400, "body holds no events"),
        (b"\n\n", "application/x-ndjson", 400, "body holds no events"),
        (b"a,b", "text/csv", 415, "unsupported Content-Type 'text/csv'"),
        (orjson.dumps([EVENT] * 4), "application/json", 413, "4 events in one request; the limit is 3"),
    ],
)
def test_unusable_bodies_get_a_status_and_a_message(body: bytes, content_type: str, status: int, message: str) -> None:
    with pytest.raises(BodyError) as error:
        split_body(body, content_type, LIMITS)
    assert error.value.status == status
    assert error.value.message.startswith(message)


def test_gzip_is_inflated() -> None:
    assert decode_content(gzip.compress(b"hello"), "gzip", LIMITS) == b"hello"
    assert decode_content(b"hello", None, LIMITS) == b"hello"


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [
        (gzip.compress(b"x" * 20_001), "gzip", 413),
        (b"not gzip at all", "gzip", 400),
        (gzip.compress(b"hello")[:-12], "gzip", 400),
        (b"hello", "br", 415),
    ],
)
def test_bad_encodings_are_refused(body: bytes, encoding: str, status: int) -> None:
    with pytest.raises(BodyError) as error:
        decode_content(body, encoding, LIMITS)
    assert error.value.status == status


def test_processing_enriches_valid_events_and_dead_letters_invalid_ones() -> None:
    with_id = {**EVENT, "event_id": "client-1"}
    invalid = {**EVENT, "event_id": "bad-1", "occurred_at": "yesterday"}
    items = split_body(
        b"\n".join([orjson.dumps(with_id), orjson.dumps(EVENT), orjson.dumps(invalid), b"{oops"]),
        "application/x-ndjson",
        Limits(),
    )
    received = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    batch = process_items(items, received, "curl/8.0", new_event_id=lambda: "server-1")

    assert [(r.index, r.status, r.event_id) for r in batch.results] == [
        (0, "accepted", "client-1"),
        (1, "accepted", "server-1"),
        (2, "rejected", "bad-1"),
        (3, "rejected", None),
    ]
    assert (
        batch.results[2].reason == "occurred_at: must be an RFC 3339 timestamp with a zone, e.g. 2024-05-01T12:30:00Z"
    )
    assert [record.key for record in batch.raw_records] == [b"t1", b"t1"]
    first, second = (orjson.loads(record.value) for record in batch.raw_records)
    assert first == {**with_id, "received_at": "2024-05-01T10:00:00.123Z", "device_family": "Other"}
    assert second == {
        **EVENT,
        "event_id": "server-1",
        "received_at": "2024-05-01T10:00:00.123Z",
        "device_family": "Other",
    }

    dead = [orjson.loads(record.value) for record in batch.dlq_records]
    assert [record.key for record in batch.dlq_records] == [b"t1", None]
    assert dead[0]["raw"] == orjson.dumps(invalid).decode()
    assert (dead[0]["tenant_id"], dead[0]["event_id"]) == ("t1", "bad-1")
    assert dead[1]["raw"] == "{oops"
    assert dead[1]["reason"].startswith("line is not valid JSON")


def test_device_family_comes_from_the_user_agent() -> None:
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
    assert device_family(iphone) == "iPhone"
    assert device_family(None) == "Other"


def test_received_at_is_utc_rfc3339_with_milliseconds() -> None:
    moment = datetime.fromisoformat("2024-05-01T12:00:00.987654+02:00")
    assert rfc3339_utc(moment) == "2024-05-01T10:00:00.987Z"


# --- per-event rules: size and event time ---------------------------------------------------------------
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULES = EventRules(max_event_bytes=4096, max_future_skew_s=300, max_age_days=30)


def at(offset: timedelta) -> str:
    return rfc3339_utc(NOW + offset)


def test_event_times_beyond_the_skew_or_the_horizon_are_dead_lettered_the_rest_accepted() -> None:
    events = [
        {**EVENT, "event_id": "now", "occurred_at": at(timedelta(0))},
        {**EVENT, "event_id": "future", "occurred_at": "2099-01-01T00:00:00Z"},
        {**EVENT, "event_id": "skew", "occurred_at": at(timedelta(seconds=300))},
        {**EVENT, "event_id": "ahead", "occurred_at": at(timedelta(seconds=301))},
        {**EVENT, "event_id": "epoch", "occurred_at": "1970-01-01T00:00:00Z"},
        {**EVENT, "event_id": "month", "occurred_at": at(-timedelta(days=30))},
        {**EVENT, "event_id": "year-1", "occurred_at": "0001-01-01T00:00:00+01:00"},  # before 0001 in UTC
        {**EVENT, "event_id": "year-9999", "occurred_at": "9999-12-31T23:59:59-01:00"},  # after 9999 in UTC
    ]
    batch = process_items(split_body(orjson.dumps(events), "application/json", Limits()), NOW, None, rules=RULES)
    verdicts = [(r.event_id, r.status, getattr(r, "reason", "").split(":")[0]) for r in batch.results]
    assert verdicts == [
        ("now", "accepted", ""),
        ("future", "rejected", "occurred_at_in_future"),
        ("skew", "accepted", ""),
        ("ahead", "rejected", "occurred_at_in_future"),
        ("epoch", "rejected", "occurred_at_too_old"),
        ("month", "accepted", ""),
        ("year-1", "rejected", "occurred_at_too_old"),
        ("year-9999", "rejected", "occurred_at_in_future"),
    ]
    dead = [orjson.loads(record.value) for record in batch.dlq_records]
    assert [(d["event_id"], d["tenant_id"], d["reason"].split(":")[0]) for d in dead] == [
        ("future", "t1", "occurred_at_in_future"),
        ("ahead", "t1", "occurred_at_in_future"),
        ("epoch", "t1", "occurred_at_too_old"),
        ("year-1", "t1", "occurred_at_too_old"),
        ("year-9999", "t1", "occurred_at_in_future"),
    ]
    assert [orjson.loads(d["raw"])["event_id"] for d in dead] == [  # whole payloads
        "future", "ahead", "epoch", "year-1", "year-9999"
    ]
    assert [orjson.loads(r.value)["event_id"] for r in batch.raw_records] == ["now", "skew", "month"]


def big_event(event_id: str, keys: int) -> dict[str, object]:
    properties = {f"k{i}": i for i in range(keys)}
    return {**EVENT, "event_id": event_id, "occurred_at": at(timedelta(0)), "properties": properties}


def test_an_oversize_event_is_refused_alone_and_its_dead_letter_fits_the_limit() -> None:
    huge = big_event("huge", 2_000)  # ~24 KB against a 4 KB limit
    items = split_body(orjson.dumps([big_event("ok-1", 3), huge, big_event("ok-2", 3)]), "application/json", Limits())
    batch = process_items(items, NOW, None, rules=RULES)
    assert [(r.event_id, r.status) for r in batch.results] == [
        ("ok-1", "accepted"), ("huge", "rejected"), ("ok-2", "accepted")
    ]
    size = len(orjson.dumps(huge))
    assert batch.results[1].reason == (  # type: ignore[union-attr]
        f"event_too_large: the event is {size:,} bytes serialised; at most 4,096 bytes are allowed"
    )
    (record,) = batch.dlq_records
    assert len(record.value) <= RULES.max_event_bytes  # type: ignore[operator]
    letter = orjson.loads(record.value)
    assert (letter["tenant_id"], letter["event_id"], letter["raw_truncated"], letter["raw_bytes"]) == (
        "t1", "huge", True, size
    )
    assert orjson.dumps(huge).decode().startswith(letter["raw"])
    assert record.key == b"t1"


def test_the_limit_counts_the_server_fields_kafka_would_get() -> None:
    # A line that fits as sent but not once received_at, device_family and a server event id are added.
    event = {**big_event("x", 0), "properties": {"pad": ""}}
    event.pop("event_id")
    base = len(orjson.dumps(event))
    event["properties"] = {"pad": "a" * (RULES.max_event_bytes - base)}  # type: ignore[operator]
    line = orjson.dumps(event)
    assert len(line) == RULES.max_event_bytes
    batch = process_items(split_body(line, "application/x-ndjson", Limits()), NOW, None, rules=RULES)
    assert batch.accepted == 0
    assert (batch.results[0].reason or "").startswith("event_too_large: the event is 4,2")  # type: ignore[union-attr]
    assert len(batch.dlq_records[0].value) <= RULES.max_event_bytes  # type: ignore[operator]


def test_an_invalid_event_whose_escaped_payload_would_not_fit_is_summarised() -> None:
    # 3 KB as sent, but each escaped backslash (2 bytes) takes 4 in the dead letter's JSON string.
    line = b'{"tenant_id":"t1","event_id":"ctl","bad":"' + b"\\\\" * 1500 + b'"}'
    assert len(line) < RULES.max_event_bytes  # type: ignore[operator]
    batch = process_items(split_body(line, "application/x-ndjson", Limits()), NOW, None, rules=RULES)
    (record,) = batch.dlq_records
    letter = orjson.loads(record.value)
    assert len(record.value) <= RULES.max_event_bytes  # type: ignore[operator]
    assert (letter["event_id"], letter["raw_truncated"], letter["raw_bytes"]) == ("ctl", True, len(line))
    assert letter["reason"].startswith("occurred_at: Field required")
    # Small dead letters keep the whole payload and no summary fields.
    small = process_items(split_body(b"{oops", "application/x-ndjson", Limits()), NOW, None, rules=RULES)
    assert set(orjson.loads(small.dlq_records[0].value)) == {"reason", "raw", "received_at", "tenant_id", "event_id"}
