"""The event stream: sessions and order lifecycles in event time, then the mess of real delivery.

Two stages, both deterministic for a seed and a start time:
1. `simulate` yields true events in event-time order (lunch and dinner peaks shape the arrivals);
2. `deliver` turns them into what producers actually send: some late, some out of order, some sent twice
   (same event_id), plus malformed extras that the contract must refuse.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from lakepulse.events import rfc3339_utc
from lakepulse.generator.world import PAGES, Restaurant, User, World, build_world

Kind = Literal["valid", "duplicate", "late", "out_of_order", "malformed"]

PAGE_VIEWS_PER_SESSION = 4.0
ORDER_PROBABILITY = 0.35
EVENTS_PER_ORDER = 11.0
APP_ERROR_SHARE = 0.01
CANCEL_PROBABILITY = 0.08
RATING_PROBABILITY = 0.55
DUPLICATE_DELAY_S = 30.0
SOURCES = {"ios": "ios-app", "android": "android-app", "web": "web-frontend"}
SERVICES = {
    "checkout": ("PAYMENT_DECLINED", "TIMEOUT"),
    "menu": ("NOT_FOUND",),
    "tracking": ("GPS_LOST", "TIMEOUT"),
}


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """Knobs of one run; the same config (including `start`) always gives the same events."""

    rate: float = 1000.0
    duration_s: float = 60.0
    seed: int = 42
    tenants: int = 20
    start: datetime | None = None
    time_scale: float = 1.0
    late_fraction: float = 0.0
    lateness_s: float = 600.0
    duplicate_fraction: float = 0.0
    out_of_order_fraction: float = 0.0
    disorder_s: float = 5.0
    malformed_fraction: float = 0.0
    run_id: str = ""

    def __post_init__(self) -> None:
        for name in ("late_fraction", "duplicate_fraction", "out_of_order_fraction", "malformed_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.late_fraction + self.out_of_order_fraction > 1.0:
            raise ValueError("late_fraction + out_of_order_fraction must not exceed 1")
        if self.rate <= 0 or self.duration_s <= 0 or self.time_scale <= 0 or self.tenants < 1:
            raise ValueError("rate, duration_s and time_scale must be positive and tenants at least 1")

    @property
    def window_start(self) -> datetime:
        """Event time of the start of the run."""
        return self.start or datetime.now(UTC).replace(microsecond=0)

    @property
    def window_s(self) -> float:
        """Event-time length of the run."""
        return self.duration_s * self.time_scale


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One thing a producer sends: the NDJSON line exactly as sent, when, and what it is."""

    line: bytes
    emit_at: datetime
    kind: Kind
    event_id: str | None
    malformation: str | None = None

    @property
    def is_valid(self) -> bool:
        """False for the malformed extras the contract must refuse."""
        return self.kind != "malformed"


def daily_intensity(moment: datetime) -> float:
    """Relative demand by hour of day: quiet nights, a lunch peak and a larger dinner peak."""
    hour = moment.hour + moment.minute / 60
    lunch = 2.0 * math.exp(-(((hour - 12.5) / 1.0) ** 2) / 2)
    dinner = 2.6 * math.exp(-(((hour - 19.5) / 1.3) ** 2) / 2)
    return 0.15 + lunch + dinner


def _mean_intensity(start: datetime, seconds: float) -> float:
    steps = max(1, min(1440, int(seconds // 60)))
    return (
        sum(daily_intensity(start + timedelta(seconds=seconds * (i + 0.5) / steps)) for i in range(steps))
        / steps
    )


class _Simulation:
    """Sessions arrive as a Poisson process scaled by the daily curve; each schedules its future events."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        prefix = f"{config.run_id}-" if config.run_id else ""
        self.world: World = build_world(self.rng, config.tenants, prefix)
        self.weights = [restaurant.popularity for restaurant in self.world.restaurants]
        self.queue: list[tuple[datetime, int, dict[str, Any]]] = []
        self.sequence = 0

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def schedule(
        self, at: datetime, tenant: Restaurant, event_type: str, source: str, **properties: Any
    ) -> None:
        event = {
            "event_id": self.event_id(),
            "tenant_id": tenant.tenant_id,
            "event_type": event_type,
            "occurred_at": rfc3339_utc(at),
            "source": source,
            "properties": properties,
        }
        self.sequence += 1
        heapq.heappush(self.queue, (at, self.sequence, event))

    def events(self) -> Iterator[dict[str, Any]]:
        """True events in event-time order, up to the end of the window."""
        config = self.config
        start, end = config.window_start, config.window_start + timedelta(seconds=config.window_s)
        events_per_session = PAGE_VIEWS_PER_SESSION + ORDER_PROBABILITY * EVENTS_PER_ORDER
        # Event time runs time_scale times faster than the wall, so per event-second the rate shrinks.
        sessions_per_s = config.rate * (1 - APP_ERROR_SHARE) / events_per_session / config.time_scale
        errors_per_s = config.rate * APP_ERROR_SHARE / config.time_scale
        mean = _mean_intensity(start, config.window_s)
        now = start
        while now < end:
            scale = daily_intensity(now) / mean
            total_per_s = (sessions_per_s + errors_per_s) * scale
            now += timedelta(seconds=self.rng.expovariate(total_per_s))
            while self.queue and self.queue[0][0] <= now and self.queue[0][0] < end:
                yield heapq.heappop(self.queue)[2]
            if now >= end:
                break
            if self.rng.random() < errors_per_s / (sessions_per_s + errors_per_s):
                self.app_error(now)
            else:
                self.session(now)
        while self.queue and self.queue[0][0] < end:
            yield heapq.heappop(self.queue)[2]

    def pick_tenant(self) -> Restaurant:
        return self.rng.choices(self.world.restaurants, self.weights)[0]

    def app_error(self, at: datetime) -> None:
        service = self.rng.choice(sorted(SERVICES))
        source = self.rng.choice(sorted(SOURCES.values()))
        self.schedule(
            at,
            self.pick_tenant(),
            "app_error",
            source,
            service=service,
            code=self.rng.choice(SERVICES[service]),
        )

    def session(self, at: datetime) -> None:
        tenant, user = self.pick_tenant(), self.rng.choice(self.world.users)
        source = SOURCES[user.device]
        for _ in range(1 + int(self.rng.expovariate(1 / (PAGE_VIEWS_PER_SESSION - 1)))):
            page = self.rng.choice(PAGES)
            self.schedule(
                at,
                tenant,
                "page_view",
                source,
                user_id=user.user_id,
                page=page,
                country=user.country,
                device=user.device,
                category=tenant.cuisine,
            )
            at += timedelta(seconds=self.rng.uniform(3, 40))
        if self.rng.random() < ORDER_PROBABILITY:
            self.order(at, tenant, user, source)

    def order(self, at: datetime, tenant: Restaurant, user: User, source: str) -> None:
        """One order's lifecycle with realistic gaps; some are cancelled before pickup."""
        rng = self.rng
        order_id = f"order-{uuid.UUID(int=rng.getrandbits(128), version=4).hex[:16]}"
        lines = rng.sample(tenant.menu, k=min(len(tenant.menu), 1 + int(rng.expovariate(0.8))))
        quantities = [1 + int(rng.expovariate(1.5)) for _ in lines]
        items = [
            {
                "item_id": item.item_id,
                "name": item.name,
                "category": item.category,
                "quantity": quantity,
                "unit_price": item.unit_price,
            }
            for item, quantity in zip(lines, quantities, strict=True)
        ]
        amount = round(sum(q * item.unit_price for item, q in zip(lines, quantities, strict=True)), 2)
        channel = "web" if user.device == "web" else rng.choices(("app", "partner"), (9, 1))[0]
        self.schedule(
            at,
            tenant,
            "order_placed",
            source,
            order_id=order_id,
            user_id=user.user_id,
            amount=amount,
            currency=tenant.currency,
            channel=channel,
            country=tenant.country,
            device=user.device,
            items=items,
        )
        self.schedule(
            at, tenant, "order_status_changed", "partner-backend", order_id=order_id, status="placed"
        )
        cancel_at_step = rng.randrange(1, 4) if rng.random() < CANCEL_PROBABILITY else None
        confirmed = at + timedelta(seconds=rng.uniform(30, 180))
        in_kitchen = confirmed + timedelta(seconds=rng.uniform(30, 120))
        ready = in_kitchen + timedelta(seconds=rng.uniform(300, 1500))
        courier = rng.choice(self.world.couriers)
        assigned = confirmed + timedelta(seconds=rng.uniform(60, 300))
        arrived = max(assigned + timedelta(seconds=60), ready + timedelta(seconds=rng.uniform(-400, 200)))
        picked_up = max(ready, arrived) + timedelta(seconds=rng.uniform(30, 180))
        delivered = picked_up + timedelta(seconds=rng.uniform(300, 1500))
        steps = [(confirmed, "confirmed"), (in_kitchen, "in_kitchen"), (ready, "ready_for_pickup")]
        for step, (when, status) in enumerate(steps, start=1):
            if step == cancel_at_step:
                self.schedule(
                    when,
                    tenant,
                    "order_status_changed",
                    "partner-backend",
                    order_id=order_id,
                    status="cancelled",
                )
                return
            self.schedule(
                when, tenant, "order_status_changed", "partner-backend", order_id=order_id, status=status
            )
        for when, status in (
            (assigned, "assigned"),
            (arrived, "arrived_at_restaurant"),
            (picked_up, "picked_up"),
            (delivered, "delivered"),
        ):
            self.schedule(
                when,
                tenant,
                "courier_status_changed",
                "courier-app",
                courier_id=courier,
                order_id=order_id,
                status=status,
            )
        self.schedule(
            picked_up,
            tenant,
            "order_status_changed",
            "partner-backend",
            order_id=order_id,
            status="picked_up",
        )
        self.schedule(
            delivered,
            tenant,
            "order_status_changed",
            "partner-backend",
            order_id=order_id,
            status="delivered",
        )
        if rng.random() < RATING_PROBABILITY:
            self.schedule(
                delivered + timedelta(seconds=rng.uniform(120, 1800)),
                tenant,
                "rating_submitted",
                source,
                order_id=order_id,
                user_id=user.user_id,
                food_rating=rng.choices(range(1, 6), (3, 5, 12, 35, 45))[0],
                delivery_rating=rng.choices(range(1, 6), (4, 6, 15, 35, 40))[0],
            )


def simulate(config: GeneratorConfig) -> Iterator[dict[str, Any]]:
    """True marketplace events of the run, in event-time order."""
    return _Simulation(config).events()


def malform(rng: random.Random, event: dict[str, Any]) -> tuple[str, bytes]:
    """A broken variant of `event` (with a fresh event_id where it keeps one) and what was broken."""
    broken = orjson.loads(orjson.dumps(event))
    broken["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    flaw = rng.choice(
        (
            "missing_tenant",
            "bad_tenant",
            "naive_time",
            "bad_time",
            "bad_property",
            "unknown_field",
            "long_event_id",
            "truncated_json",
            "not_an_object",
        )
    )
    if flaw == "missing_tenant":
        del broken["tenant_id"]
    elif flaw == "bad_tenant":
        broken["tenant_id"] = broken["tenant_id"] + " !"
    elif flaw == "naive_time":
        broken["occurred_at"] = broken["occurred_at"].rstrip("Z")
    elif flaw == "bad_time":
        broken["occurred_at"] = "yesterday at noon"
    elif flaw == "bad_property":
        _break_property(broken)
    elif flaw == "unknown_field":
        broken["debug"] = True
    elif flaw == "long_event_id":
        broken["event_id"] = "x" * 65
    elif flaw == "truncated_json":
        line = orjson.dumps(broken)
        return flaw, line[: len(line) // 2]
    else:
        return flaw, orjson.dumps([broken["event_type"], broken["tenant_id"]])
    return flaw, orjson.dumps(broken)


def _break_property(event: dict[str, Any]) -> None:
    """Violate the property rule the event type is most likely to get wrong."""
    properties = event["properties"]
    match event["event_type"]:
        case "order_placed":
            properties["amount"] = -abs(properties["amount"]) - 1
        case "order_status_changed" | "courier_status_changed":
            properties["status"] = "teleported"
        case "rating_submitted":
            properties["food_rating"] = 9
        case "page_view":
            del properties["user_id"]
        case _:
            properties.pop("code", None)


def deliver(config: GeneratorConfig, events: Iterator[dict[str, Any]]) -> Iterator[GeneratedEvent]:
    """What producers send, in send order: true events plus late, disordered, duplicate and malformed ones."""
    rng = random.Random(config.seed ^ 0x5EED)
    outbox: list[tuple[datetime, int, GeneratedEvent]] = []
    sequence = 0

    def post(at: datetime, generated: GeneratedEvent) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(outbox, (at, sequence, generated))

    for event in events:
        occurred = datetime.fromisoformat(event["occurred_at"])
        while outbox and outbox[0][0] <= occurred:
            yield heapq.heappop(outbox)[2]
        draw = rng.random()
        kind: Kind = "valid"
        emit_at = occurred
        if draw < config.late_fraction:
            kind, emit_at = "late", occurred + timedelta(seconds=config.lateness_s * rng.uniform(1.0, 1.5))
        elif draw < config.late_fraction + config.out_of_order_fraction:
            kind, emit_at = (
                "out_of_order",
                occurred + timedelta(seconds=rng.uniform(0.001, config.disorder_s)),
            )
        line = orjson.dumps(event)
        post(emit_at, GeneratedEvent(line, emit_at, kind, event["event_id"]))
        if rng.random() < config.duplicate_fraction:
            # A client retry: the identical line again, a little later.
            again = emit_at + timedelta(seconds=rng.uniform(0.001, DUPLICATE_DELAY_S))
            post(again, GeneratedEvent(line, again, "duplicate", event["event_id"]))
        if rng.random() < config.malformed_fraction:
            flaw, broken = malform(rng, event)
            post(occurred, GeneratedEvent(broken, occurred, "malformed", None, flaw))
    while outbox:
        yield heapq.heappop(outbox)[2]


def generate_events(config: GeneratorConfig) -> Iterator[GeneratedEvent]:
    """The full stream of a run, deterministic for (config, start)."""
    resolved = replace(config, start=config.window_start)
    return deliver(resolved, simulate(resolved))
