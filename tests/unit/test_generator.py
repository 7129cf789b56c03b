"""The load generator: deterministic, realistic lifecycles and peaks, and the promised mess."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from lakepulse.events import InvalidEvent, validate_event
from lakepulse.generator.scenario import GeneratorConfig, daily_intensity, generate_events
from lakepulse.generator.targets import FileTarget, paced, run

START = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
MESSY = GeneratorConfig(
    rate=100,
    duration_s=60,
    time_scale=120,  # two hours of event time: whole order lifecycles fit
    seed=7,
    tenants=5,
    start=START,
    late_fraction=0.03,
    lateness_s=600,
    duplicate_fraction=0.04,
    out_of_order_fraction=0.1,
    malformed_fraction=0.05,
    run_id="unit",
)


@pytest.fixture(scope="module")
def messy() -> list:
    return list(generate_events(MESSY))


def test_same_seed_same_events_other_seed_other_events(messy: list) -> None:
    again = [event.line for event in generate_events(MESSY)]
    other = [event.line for event in generate_events(GeneratorConfig(**{**_fields(MESSY), "seed": 8}))]
    assert [event.line for event in messy] == again
    assert again[:50] != other[:50]


def _fields(config: GeneratorConfig) -> dict:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def test_valid_events_pass_the_contract_and_malformed_ones_do_not(messy: list) -> None:
    refused = Counter()
    for event in messy:
        try:
            value = orjson.loads(event.line)
            validate_event(value)
            assert event.is_valid, f"malformed event passed: {event.malformation}"
        except (InvalidEvent, orjson.JSONDecodeError):
            assert not event.is_valid, event.line
            refused[event.malformation] += 1
    assert set(refused) == {
        "missing_tenant", "bad_tenant", "naive_time", "bad_time", "bad_property", "unknown_field",
        "long_event_id", "truncated_json", "not_an_object",
    }  # fmt: skip


def test_the_mess_comes_in_the_asked_proportions(messy: list) -> None:
    kinds = Counter(event.kind for event in messy)
    true_events = kinds["valid"] + kinds["late"] + kinds["out_of_order"]
    assert 0.02 < kinds["late"] / true_events < 0.04
    assert 0.08 < kinds["out_of_order"] / true_events < 0.12
    assert 0.03 < kinds["duplicate"] / true_events < 0.05
    assert 0.04 < kinds["malformed"] / true_events < 0.06


def test_duplicates_repeat_an_earlier_line_with_the_same_id(messy: list) -> None:
    seen: set[bytes] = set()
    duplicates = 0
    for event in messy:
        if event.kind == "duplicate":
            assert event.line in seen
            duplicates += 1
        seen.add(event.line)
    assert duplicates > 0


def test_late_events_arrive_after_newer_events(messy: list) -> None:
    latest_seen = datetime.min.replace(tzinfo=UTC)
    late_by = []
    for event in messy:
        if not event.is_valid:
            continue
        occurred = datetime.fromisoformat(orjson.loads(event.line)["occurred_at"])
        if event.kind == "late":
            late_by.append((latest_seen - occurred).total_seconds())
        latest_seen = max(latest_seen, occurred)
    # Late events reach the producer at least `lateness` after they happened, minus the tail of the run.
    assert sum(lateness >= 500 for lateness in late_by) > 0.8 * len(late_by)


def test_order_lifecycles_follow_the_status_order(messy: list) -> None:
    order = ["placed", "confirmed", "in_kitchen", "ready_for_pickup", "picked_up", "delivered"]
    statuses: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for event in messy:
        if event.kind in ("valid", "late", "out_of_order"):
            value = orjson.loads(event.line)
            if value["event_type"] == "order_status_changed":
                statuses[value["properties"]["order_id"]].append(
                    (value["occurred_at"], value["properties"]["status"])
                )
    outcomes = Counter()
    for history in statuses.values():
        sequence = [status for _, status in sorted(history)]
        if sequence[-1] == "cancelled":
            assert sequence[:-1] == order[: len(sequence) - 1]
            outcomes["cancelled"] += 1
        else:
            assert sequence == order[: len(sequence)]
            outcomes[sequence[-1]] += 1
    assert outcomes["delivered"] > 50
    assert outcomes["cancelled"] > 0


def test_tenant_ids_carry_the_run_id(messy: list) -> None:
    tenants = {orjson.loads(e.line)["tenant_id"] for e in messy if e.is_valid}
    assert tenants <= {f"unit-rest-{n:04d}" for n in range(1, 6)}
    assert len(tenants) == 5


def test_dinner_is_busier_than_the_night() -> None:
    day = GeneratorConfig(
        rate=20, duration_s=60, time_scale=1440, seed=3, start=datetime(2024, 5, 1, tzinfo=UTC)
    )
    hours = Counter(
        datetime.fromisoformat(orjson.loads(e.line)["occurred_at"]).hour for e in generate_events(day)
    )
    assert hours[19] > 5 * hours[3]
    assert hours[12] > 5 * hours[3]
    assert daily_intensity(datetime(2024, 5, 1, 19, 30, tzinfo=UTC)) > daily_intensity(START.replace(hour=16))


def test_rate_holds_in_steady_state() -> None:
    # Three hours of event time at 20 events per (wall) second of a 540 s run: ~10,800 events.
    config = GeneratorConfig(rate=20, duration_s=540, time_scale=20, seed=5, start=START.replace(hour=14))
    count = sum(1 for _ in generate_events(config))
    assert 0.8 * 10_800 < count < 1.1 * 10_800


def test_knobs_are_checked() -> None:
    with pytest.raises(ValueError, match="duplicate_fraction must be between 0 and 1"):
        GeneratorConfig(duplicate_fraction=1.5)
    with pytest.raises(ValueError, match="late_fraction \\+ out_of_order_fraction"):
        GeneratorConfig(late_fraction=0.6, out_of_order_fraction=0.6)


def test_pacing_sleeps_until_each_send_time() -> None:
    config = GeneratorConfig(rate=1, duration_s=10, start=START)
    events = [e for e in generate_events(config)]
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    released = list(paced(events, config, sleep=sleep, clock=lambda: now[0]))
    assert released == events
    assert now[0] == pytest.approx(min(10.0, (events[-1].emit_at - START).total_seconds()))


def test_file_target_writes_one_line_per_event(tmp_path: Path, messy: list) -> None:
    path = tmp_path / "out" / "events.ndjson"
    counts = run(messy[:500], FileTarget(path))
    lines = path.read_bytes().splitlines()
    assert lines == [event.line for event in messy[:500]]
    assert sum(counts.values()) == 500
    assert timedelta(0) <= messy[499].emit_at - messy[0].emit_at
