"""Operational facts for the operations page (analyst and admin roles), each read from where it lives, and the
backfill trigger.

The parts of `GET /v1/ops/overview` and their sources:
- `services`: supervisord's view of each local program (its XML-RPC socket); in cluster mode the orchestrator has
  it, so the part says it is not available here;
- `kafka_lags`: every consumer group's committed offsets (the raw-archive Connect sink's among them), each streaming
  query's read position (the job's `/progress`) and each Pinot realtime table's consuming offsets (the controller),
  against the log ends (Kafka's admin API);
- `freshness`: the streaming job's newest received event and watermarks (`/healthz`, `/progress`) and Pinot's
  newest minute row (the broker);
- `archive`: the raw-archive connector's state, the records of events.raw it has not committed yet and the age of
  the oldest of them;
- `hourly`: the hourly DAG's last runs and their tasks (Airflow's REST API);
- `seam`: the seam object on S3 (where it is, when it last moved);
- `late_events` / `dead_letters`: the late-events and dead-letter topics counted per tenant and producer / per
  reason over the last hour and day (no Pinot table holds them; see TopicTally);
- `reconcile`: Delta's and Pinot's minute rows per metric over the latest final hour [seam - 1 h, seam), counted
  now. The hourly run's reconcile task repairs Pinot and prints its report to its task log, which Airflow (at
  WARNING) keeps only when the task fails, so no report is stored to show.

Every part has its own deadline (PART_TIMEOUT_S) and every engine call a timeout; a part that fails or does not
answer in time says `available: false` with a reason in our words (the engine's own text goes to the log only),
and the other parts are still answered.

Backfills: analysts and admins read runs, only admins start one (it rewrites the served tables of the range and
republishes Pinot's rows). A range is whole UTC hours, ends when the current hour starts at the latest, and spans
at most MAX_BACKFILL_HOURS; the run is the backfill DAG's, triggered as `lakepulse backfill` triggers it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import boto3
import httpx
import orjson
import trino.dbapi
from botocore.client import Config

from lakepulse.api.sources import SeamReader, SourceUnavailable
from lakepulse.batch.airflow_api import AirflowApi
from lakepulse.batch.seam import production_seam_uri, split_uri
from lakepulse.batch_cli import BACKFILL_DAG
from lakepulse.catalog.trino import DELTA_SCHEMA
from lakepulse.platform.components.airflow import HOURLY_DAG, airflow_password
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.connect_sink import connect_group, connector_config, connector_status, states
from lakepulse.platform.supervisor import Supervisor
from lakepulse.settings import Settings
from streaming.config import StreamingSettings
from streaming.monitor import offsets_behind

log = logging.getLogger(__name__)

REPO: Final = Path(__file__).resolve().parents[2]
PART_TIMEOUT_S: Final = 8.0  # one part of the overview, all its calls included
CALL_TIMEOUT_S: Final = 4.0  # one engine call
HEALTHZ_TIMEOUT_S: Final = 6.0  # the streaming job's readiness answer, which reads Kafka first
TALLY_BUDGET_S: Final = 6.0  # reading a topic's new messages for the late/dead-letter counts, per overview
AIRFLOW_LOGIN_S: Final = 600.0  # log in again after this long (Airflow's tokens live longer)
MAX_BACKFILL_HOURS: Final = 7 * 24
RUNS_SHOWN: Final = 5
BACKFILLS_SHOWN: Final = 10
LATE_ROWS: Final = 50
REASON_ROWS: Final = 30
MAX_GROUPS: Final = 20
MAX_TALLY_KEYS: Final = 2_000  # distinct (tenant, producer) or (reason, stage) keys kept per topic; more → "other"
REASON_CHARS: Final = 160
OTHER: Final = "(other)"
RECONCILE_KEYS: Final = 20_000  # (metric, tenant) pairs read from Pinot for the reconcile comparison
TENANTS_SHOWN: Final = 5
HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
ACTIVE_RUN_STATES: Final = frozenset({"queued", "running"})
# Airflow run ids: `manual__<time>`, `scheduled__<time>`, or a caller's own id of these characters.
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9_.:+\-]{1,250}$"
AIRFLOW_LAYER: Final = "scheduler (Airflow)"

Part = dict[str, Any]
_TIMESTAMP: Final = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")
# A number of its own (not part of a name, a pattern or a standard's name such as RFC 3339).
_NUMBER: Final = re.compile(r"(?<=[\s(])(?<!RFC )\d+(\.\d+)?\b")


def iso(moment: datetime | None) -> str | None:
    """An aware time as RFC 3339 in UTC with `Z` (None stays None)."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_ms(millis: float | int | None) -> datetime | None:
    """Epoch milliseconds → aware UTC time (None and non-positive → None)."""
    return datetime.fromtimestamp(float(millis) / 1000, UTC) if millis and float(millis) > 0 else None


def parse_iso(text: str | None) -> datetime | None:
    """An RFC 3339 time as Airflow, Spark or our own objects write it (None and "" → None)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_between(earlier: datetime | None, later: datetime | None) -> float | None:
    """`later - earlier` in seconds, rounded to 0.1 (None when either is unknown)."""
    return None if earlier is None or later is None else round((later - earlier).total_seconds(), 1)


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour that holds `moment`."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def unavailable(reason: str) -> Part:
    """A part (or a source within one) that could not be read, and why, in our words."""
    return {"available": False, "reason": reason}


class NotHere(Exception):
    """A source this process cannot read at all (e.g. no Airflow credentials here); the message is ours, shown as is."""


def failure(what: str, exc: BaseException) -> Part:
    """`unavailable` for an exception: its class name only (engine text can quote SQL or hosts; it is logged)."""
    if isinstance(exc, NotHere):
        return unavailable(str(exc))
    log.warning("operations: %s failed: %r", what, exc)
    return unavailable(f"{what} did not answer ({type(exc).__name__})")


# ---------------------------------------------------------------------------------------------------------------
# Backfill requests


class BackfillRangeError(ValueError):
    """A backfill request the API refuses (400), in words for the person who sent it."""


@dataclass(frozen=True)
class BackfillPlan:
    """A checked backfill: [start, end) in whole UTC hours, the metrics (empty: all) and whether Pinot is repaired."""

    start: datetime
    end: datetime
    metrics: tuple[str, ...]
    reconcile: bool

    def conf(self) -> dict[str, Any]:
        """The backfill DAG's run conf, as `lakepulse backfill` sends it."""
        return {"start": iso(self.start), "end": iso(self.end), "metrics": list(self.metrics),
                "reconcile": self.reconcile}


def backfill_plan(start: datetime, end: datetime, metrics: Iterable[str], reconcile: bool, now: datetime,
                  known_metrics: Collection[str], max_hours: int = MAX_BACKFILL_HOURS) -> BackfillPlan:
    """The backfill of [start, end) with `metrics` at `now`; BackfillRangeError unless both ends are whole hours with a
    zone, the range is not empty, ends when the current hour starts at the latest, spans at most `max_hours`, and
    every metric is in the catalog."""
    if start.utcoffset() is None or end.utcoffset() is None:
        raise BackfillRangeError("from and to need a time zone (e.g. 2026-05-01T10:00:00Z)")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    for name, moment in (("from", start), ("to", end)):
        if moment != floor_hour(moment):
            raise BackfillRangeError(f"{name} must be a whole hour (minutes, seconds and fractions zero, in UTC)")
    if end <= start:
        raise BackfillRangeError("to must be after from")
    newest_end = floor_hour(now)
    if end > newest_end:
        raise BackfillRangeError(f"to is in the future or inside the current hour; the latest end is "
                                 f"{iso(newest_end)}")
    if end - start > timedelta(hours=max_hours):
        raise BackfillRangeError(f"a backfill spans at most {max_hours} hours; split a longer range")
    wanted = tuple(sorted(set(metrics)))
    if any(metric not in known_metrics for metric in wanted):
        # The name is not quoted back: GET /v1/catalog lists the known ones.
        raise BackfillRangeError("metrics: a name is not in the metric catalog (GET /v1/catalog lists them)")
    return BackfillPlan(start, end, wanted, reconcile)


# ---------------------------------------------------------------------------------------------------------------
# Late-event and dead-letter counts


def late_key(value: bytes | None) -> tuple[str, str]:
    """A late-events message → (tenant, producer)."""
    try:
        body = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return ("(unreadable)", "(unreadable)")
    if not isinstance(body, dict):
        return ("(unreadable)", "(unreadable)")
    return (str(body.get("tenant_id") or "(none)")[:64], str(body.get("source") or "(none)")[:64])


def reason_kind(reason: str) -> str:
    """A dead-letter reason without the details that make each one unique (times, positions, ages), so that one
    kind of refusal is one row: "line 1 column 129 (char 128)" → "line N column N (char N)"."""
    kind = _TIMESTAMP.sub("<time>", reason)
    return _NUMBER.sub("N", kind)[:REASON_CHARS]


def dead_letter_key(value: bytes | None) -> tuple[str, str]:
    """A dead-letter message → (its reason's kind, the stage that refused it: ingest or streaming)."""
    try:
        body = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return ("(unreadable message)", "?")
    if not isinstance(body, dict):
        return ("(unreadable message)", "?")
    return (reason_kind(str(body.get("reason") or "(no reason)")), str(body.get("stage") or "ingest")[:32])


@dataclass(frozen=True)
class TallyCounts:
    """Per key: messages of the last hour and of the last day; `complete` once the whole day has been read."""

    hour: dict[tuple[str, ...], int]
    day: dict[tuple[str, ...], int]
    complete: bool


class TopicTally:
    """Messages of one topic per minute (of their Kafka timestamp: when the producer wrote them) and key, over the
    last `window`, read incrementally: each read consumes only what arrived since the previous one, within a time
    budget (the first one reads the whole window; what it could not reach yet, the next read continues)."""

    def __init__(self, bootstrap: str, topic: str, key_of: Callable[[bytes | None], tuple[str, ...]],
                 window: timedelta = DAY, max_keys: int = MAX_TALLY_KEYS,
                 clock: Callable[[], float] = time.time) -> None:
        self._bootstrap = bootstrap
        self.topic = topic
        self._key_of = key_of
        self._window_ms = int(window.total_seconds() * 1000)
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._next: dict[int, int] = {}  # partition → the next offset to count
        self._minutes: dict[int, Counter[tuple[str, ...]]] = {}  # epoch minute → counts per key
        self._keys: set[tuple[str, ...]] = set()

    def read(self, budget_s: float) -> TallyCounts:
        """Count what arrived since the last read (at most `budget_s` of reading), then the hour's and day's counts."""
        if not self._lock.acquire(timeout=budget_s):
            raise TimeoutError(f"another read of {self.topic} is still running")
        try:
            complete = self._catch_up(budget_s)
            return self._counts(complete)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the Kafka consumer, if one was opened."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _open(self) -> Any:
        from confluent_kafka import Consumer

        if self._consumer is None:
            # assign() only, never subscribe() or commit(): the group id joins nothing and stores nothing.
            self._consumer = Consumer({"bootstrap.servers": self._bootstrap, "group.id": "lakepulse-api-ops",
                                       "enable.auto.commit": False, "enable.partition.eof": True,
                                       "queued.max.messages.kbytes": 16384, "log_level": 0})
        return self._consumer

    def _catch_up(self, budget_s: float) -> bool:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        deadline = time.monotonic() + budget_s
        horizon_ms = int(self._clock() * 1000) - self._window_ms
        consumer = self._open()
        meta = consumer.list_topics(self.topic, timeout=CALL_TIMEOUT_S).topics.get(self.topic)
        if meta is None or meta.error is not None:
            raise KafkaException(meta.error if meta is not None else f"no topic {self.topic}")
        todo: dict[int, int] = {}  # partition → the log end when this read started
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=CALL_TIMEOUT_S)
            start = self._next.get(partition)
            if start is None or start > high:  # first read, or the topic was recreated: from the window's start
                found = consumer.offsets_for_times([TopicPartition(self.topic, partition, horizon_ms)],
                                                   timeout=CALL_TIMEOUT_S)[0]
                start = found.offset if found.offset >= 0 else high  # -1: nothing as new as the horizon
            self._next[partition] = max(start, low)
            if self._next[partition] < high:
                todo[partition] = high
        if todo:
            consumer.assign([TopicPartition(self.topic, p, self._next[p]) for p in todo])
            try:
                while todo and time.monotonic() < deadline:
                    for message in consumer.consume(5000, timeout=min(0.5, max(0.01, deadline - time.monotonic()))):
                        partition = message.partition()
                        error = message.error()
                        if error is not None:
                            if error.code() == KafkaError._PARTITION_EOF:  # gaps (e.g. control records) end here
                                self._next[partition] = max(self._next[partition], message.offset())
                                todo.pop(partition, None)
                            continue
                        self._add(message.timestamp()[1], message.value(), horizon_ms)
                        self._next[partition] = message.offset() + 1
                        if partition in todo and self._next[partition] >= todo[partition]:
                            todo.pop(partition)
            finally:
                consumer.unassign()
        self._prune(horizon_ms)
        return not todo

    def _add(self, timestamp_ms: int, value: bytes | None, horizon_ms: int) -> None:
        if timestamp_ms < horizon_ms:
            return
        key = self._key_of(value)
        if key not in self._keys:
            if len(self._keys) >= self._max_keys:
                key = tuple(OTHER for _ in key)
            self._keys.add(key)
        self._minutes.setdefault(timestamp_ms // 60_000, Counter())[key] += 1

    def _prune(self, horizon_ms: int) -> None:
        oldest = horizon_ms // 60_000
        stale = [minute for minute in self._minutes if minute < oldest]
        for minute in stale:
            del self._minutes[minute]
        if stale:
            self._keys = {key for counts in self._minutes.values() for key in counts}

    def _counts(self, complete: bool) -> TallyCounts:
        now_minute = int(self._clock() // 60)
        hour: Counter[tuple[str, ...]] = Counter()
        day: Counter[tuple[str, ...]] = Counter()
        for minute, counts in self._minutes.items():
            day.update(counts)
            if minute > now_minute - 60:
                hour.update(counts)
        return TallyCounts(dict(hour), dict(day), complete)


def tally_rows(counts: TallyCounts, names: tuple[str, str], limit: int) -> Part:
    """The counts as rows (most in the last hour first, then most in the day; at most `limit`) with totals."""
    # What is happening now first: the last hour's counts, then the day's.
    keys = sorted(counts.day, key=lambda k: (-counts.hour.get(k, 0), -counts.day[k], k))
    rows = [{names[0]: key[0], names[1]: key[1], "last_hour": counts.hour.get(key, 0), "last_day": counts.day[key]}
            for key in keys[:limit]]
    return {"available": True, "complete": counts.complete,
            "totals": {"last_hour": sum(counts.hour.values()), "last_day": sum(counts.day.values())},
            "rows": rows, "more_rows": max(0, len(keys) - limit)}


# ---------------------------------------------------------------------------------------------------------------
# Airflow


class AirflowClient:
    """Airflow's REST API as the stack's Airflow user (locally: the password Airflow generated), logged in at most
    once per AIRFLOW_LOGIN_S."""

    def __init__(self, settings: Settings, timeout_s: float = CALL_TIMEOUT_S,
                 password: Callable[[], str] | None = None) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._password = password or (lambda: airflow_password(Context(settings=settings, repo=REPO)))
        self._lock = threading.Lock()
        self._api: AirflowApi | None = None
        self._logged_in_at = float("-inf")

    def api(self, fresh: bool = False) -> AirflowApi:
        """A logged-in client (a new login when `fresh` or the last one is old)."""
        with self._lock:
            if fresh or self._api is None or time.monotonic() - self._logged_in_at > AIRFLOW_LOGIN_S:
                try:
                    password = self._password()
                except (OSError, KeyError, ValueError) as exc:
                    raise NotHere("no Airflow password for this API process (locally it is read from Airflow's "
                                  "generated password file in the stack's state directory)") from exc
                self._api = AirflowApi.login(self._settings.airflow_url, self._settings.airflow_user, password,
                                             self._timeout_s)
                self._logged_in_at = time.monotonic()
            return self._api

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any | None:
        """GET /api/v2`path` as JSON; None for 404; HTTPStatusError for other errors (one new login on 401)."""
        for attempt in range(2):
            api = self.api(fresh=attempt > 0)
            response = httpx.get(f"{api.url}/api/v2{path}", params=params, timeout=self._timeout_s,
                                 headers={"Authorization": f"Bearer {api.token}"})
            if response.status_code == 401 and attempt == 0:
                continue
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return response.json()
        return None  # not reached: the second attempt returns or raises

    def runs(self, dag_id: str, limit: int) -> list[dict[str, Any]]:
        """The DAG's newest runs, newest first (by when they were due to run: manual runs have no logical date)."""
        body = self.get(f"/dags/{dag_id}/dagRuns", {"order_by": "-run_after", "limit": limit})
        return list((body or {}).get("dag_runs", []))

    def run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """One run, None when the DAG has no such run."""
        body = self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        return dict(body) if body is not None else None

    def tasks(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances."""
        body = self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return list((body or {}).get("task_instances", []))


def task_view(task: dict[str, Any]) -> Part:
    """What the page shows of one task instance."""
    return {"task_id": task.get("task_id"), "state": task.get("state") or "none",
            "try_number": task.get("try_number"), "max_tries": task.get("max_tries"),
            "start": task.get("start_date"), "end": task.get("end_date"),
            "duration_s": round(float(task["duration"]), 1) if task.get("duration") is not None else None}


def ordered_tasks(tasks: list[dict[str, Any]]) -> list[Part]:
    """Task instances in the order they ran (not started yet: last)."""
    return [task_view(t) for t in sorted(tasks, key=lambda t: (t.get("start_date") is None, t.get("start_date") or "",
                                                               t.get("task_id") or ""))]


def run_view(run: dict[str, Any], now: datetime) -> Part:
    """What the page shows of one DAG run (its conf's range for a backfill)."""
    started, ended = parse_iso(run.get("start_date")), parse_iso(run.get("end_date"))
    conf = run.get("conf") or {}
    view: Part = {"run_id": run.get("dag_run_id"), "state": run.get("state"), "run_type": run.get("run_type"),
                  "logical_date": run.get("logical_date"), "queued_at": run.get("queued_at"),
                  "start": run.get("start_date"), "end": run.get("end_date"),
                  "duration_s": seconds_between(started, ended or (now if started else None)),
                  "finished": run.get("state") not in ACTIVE_RUN_STATES}
    if "start" in conf or "end" in conf:
        view.update({"range": [conf.get("start"), conf.get("end")], "metrics": list(conf.get("metrics") or []),
                     "reconcile": bool(conf.get("reconcile", True))})
    return view


# ---------------------------------------------------------------------------------------------------------------
# The reader of every part


class Operations:
    """The operations facts of one API process: builds the overview from each source with its own deadline, and
    starts and reads backfill runs. Connects to nothing until asked."""

    def __init__(self, settings: Settings, seam: SeamReader | None = None,
                 airflow: AirflowClient | None = None) -> None:
        self._settings = settings
        self._seam_reader = seam
        self._airflow = airflow or AirflowClient(settings)
        self._streaming = StreamingSettings()
        self._pool = ThreadPoolExecutor(max_workers=10, thread_name_prefix="ops")
        self._admin_lock = threading.Lock()
        self._admin: Any = None
        self._s3: Any = None
        self.late = TopicTally(settings.kafka_bootstrap, settings.topic_events_late, late_key)
        self.dead_letters = TopicTally(settings.kafka_bootstrap, settings.topic_events_dlq, dead_letter_key)

    def close(self) -> None:
        """Stop the worker threads and close the Kafka consumers."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.late.close()
        self.dead_letters.close()

    # The overview -------------------------------------------------------------------------------------------------
    def overview(self, now: datetime) -> dict[str, Any]:
        """Every part at `now`, read concurrently, each within PART_TIMEOUT_S."""
        parts: dict[str, Callable[[datetime], Part]] = {
            "services": self.services, "kafka_lags": self.kafka_lags, "freshness": self.freshness,
            "archive": self.archive, "hourly": self.hourly, "seam": self.seam, "late_events": self.late_events,
            "dead_letters": self.dead_letter_reasons, "reconcile": self.reconcile,
        }
        started = time.monotonic()
        futures: dict[str, Future[Part]] = {name: self._pool.submit(self._timed, name, read, now)
                                            for name, read in parts.items()}
        wait(futures.values(), timeout=PART_TIMEOUT_S)
        answer: dict[str, Any] = {"as_of": iso(now), "mode": self._settings.mode}
        for name, future in futures.items():
            if future.done():
                answer[name] = future.result()
            else:
                future.cancel()
                answer[name] = unavailable(f"no answer within {PART_TIMEOUT_S:g} s")
        answer["took_ms"] = round((time.monotonic() - started) * 1000)
        return answer

    @staticmethod
    def _timed(name: str, read: Callable[[datetime], Part], now: datetime) -> Part:
        started = time.monotonic()
        try:
            part = read(now)
        except Exception as exc:  # noqa: BLE001 - a part fails alone, in our words
            part = failure(name.replace("_", " "), exc)
        part["took_ms"] = round((time.monotonic() - started) * 1000)
        return part

    # Services ----------------------------------------------------------------------------------------------------
    def services(self, now: datetime) -> Part:
        """Each local program's supervisor state, pid and uptime (cluster mode: not available here)."""
        if self._settings.mode != "local":
            return unavailable("cluster mode: the services run under the cluster's orchestrator; its console shows "
                               "their state")
        processes = Supervisor(Context(settings=self._settings, repo=REPO)).processes()
        if not processes:
            return unavailable("supervisord is not running for this state directory (`lakepulse up` starts it)")
        rows = []
        for name, info in sorted(processes.items()):
            state = str(info.get("statename", "UNKNOWN"))
            running = state == "RUNNING" and info.get("start")
            rows.append({"name": name, "state": state, "pid": int(info.get("pid") or 0) or None,
                         "since": iso(datetime.fromtimestamp(float(info["start"]), UTC)) if running else None,
                         "uptime_s": int(info.get("now", 0)) - int(info["start"]) if running else None,
                         "description": str(info.get("description", ""))[:200]})
        return {"available": True, "manager": "supervisord", "services": rows,
                "running": sum(1 for r in rows if r["state"] == "RUNNING"), "total": len(rows)}

    # Kafka ---------------------------------------------------------------------------------------------------------
    def _kafka_admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        with self._admin_lock:
            if self._admin is None:
                self._admin = AdminClient({"bootstrap.servers": self._settings.kafka_bootstrap, "log_level": 0})
            return self._admin

    def log_ends(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        """The log-end offset of every partition of `topics` (missing topics are left out)."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        admin = self._kafka_admin()
        wanted = sorted(set(topics))
        if not wanted:
            return {}
        meta = admin.list_topics(timeout=CALL_TIMEOUT_S).topics
        request = {TopicPartition(t, p): OffsetSpec.latest() for t in wanted if t in meta
                   for p in meta[t].partitions}
        if not request:
            return {}
        answers = admin.list_offsets(request, request_timeout=CALL_TIMEOUT_S)
        return {(tp.topic, tp.partition): int(f.result(timeout=CALL_TIMEOUT_S).offset) for tp, f in answers.items()}

    def group_offsets(self) -> dict[str, dict[tuple[str, int], int]]:
        """Each consumer group's committed offsets (groups without any are left out; at most MAX_GROUPS)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

        admin = self._kafka_admin()
        listed = admin.list_consumer_groups(request_timeout=CALL_TIMEOUT_S).result(timeout=CALL_TIMEOUT_S)
        if listed.errors and not listed.valid:  # no broker answered: not "no groups"
            raise KafkaException(listed.errors[0])
        groups: dict[str, dict[tuple[str, int], int]] = {}
        for listing in sorted(listed.valid, key=lambda g: g.group_id)[:MAX_GROUPS]:
            answer = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(listing.group_id)],
                                                       request_timeout=CALL_TIMEOUT_S)
            result = answer[listing.group_id].result(timeout=CALL_TIMEOUT_S)
            committed = {(tp.topic, tp.partition): int(tp.offset) for tp in result.topic_partitions or []
                         if tp.offset >= 0}
            if committed:
                groups[listing.group_id] = committed
        return groups

    def _archive_group(self) -> tuple[str, str]:
        """The raw-archive connector's name and the consumer group it commits in."""
        name, _ = connector_config(REPO, self._settings)
        return name, connect_group(name)

    def _get_json(self, url: str, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        response = httpx.get(url, timeout=timeout_s)
        if response.status_code not in (200, 503):  # the streaming job's /healthz says 503 while not ready
            response.raise_for_status()
        return response.json()

    def _streaming_url(self, path: str) -> str:
        return f"http://{self._streaming.metrics_host}:{self._streaming.metrics_port}{path}"

    def _pinot_consuming(self) -> dict[str, tuple[str, dict[int, int]]]:
        """Each realtime table → (its topic, the offset each partition's consuming segment has reached)."""
        controller = self._settings.pinot_controller_url
        tables = self._get_json(f"{controller}/tables").get("tables", [])
        found: dict[str, tuple[str, dict[int, int]]] = {}
        for table in sorted(tables):
            config = (self._get_json(f"{controller}/tables/{quote(table, safe='')}?type=realtime") or {})
            realtime = config.get("REALTIME") or {}
            maps = ((realtime.get("ingestionConfig") or {}).get("streamIngestionConfig") or {}).get(
                "streamConfigMaps") or []
            legacy = (realtime.get("tableIndexConfig") or {}).get("streamConfigs")
            topic = next((m.get("stream.kafka.topic.name") for m in [*maps, legacy or {}]
                          if m.get("stream.kafka.topic.name")), None)
            if topic is None:
                continue
            info = self._get_json(f"{controller}/tables/{quote(table, safe='')}/consumingSegmentsInfo")
            offsets: dict[int, int] = {}
            for replicas in (info.get("_segmentToConsumingInfoMap") or {}).values():
                for replica in replicas:
                    for partition, offset in (replica.get("partitionToOffsetMap") or {}).items():
                        offsets[int(partition)] = max(offsets.get(int(partition), 0), int(offset))
            found[table] = (topic, offsets)
        return found

    def kafka_lags(self, now: datetime) -> Part:
        """Records each consumer has not read yet: consumer groups (the archive's Connect sink among them), the
        streaming job's queries and Pinot's realtime tables, each against the log ends read once."""
        _, archive_group = self._archive_group()
        sources: dict[str, Any] = {}
        for name, read in (("groups", self.group_offsets),
                           ("streaming", lambda: self._get_json(self._streaming_url("/progress"))),
                           ("pinot", self._pinot_consuming)):
            try:
                sources[name] = read()
            except Exception as exc:  # noqa: BLE001 - one source fails alone
                sources[name] = failure({"groups": "Kafka's consumer groups", "streaming": "the streaming job",
                                         "pinot": "Pinot's controller"}[name], exc)
        if all(_failed(part) for part in sources.values()):
            return unavailable("; ".join(part["reason"] for part in sources.values()))
        topics: set[str] = set()
        groups = sources["groups"] if not _failed(sources["groups"]) else {}
        for committed in groups.values():
            topics.update(topic for topic, _ in committed)
        progress = sources["streaming"] if not _failed(sources["streaming"]) else {}
        for query in progress.values():
            for source in query.get("sources", []):
                topics.update(_offsets(source.get("endOffset")) or _offsets(source.get("latestOffset")))
        pinot = sources["pinot"] if not _failed(sources["pinot"]) else {}
        topics.update(topic for topic, _ in pinot.values())
        ends = self.log_ends(topics)
        consumers: list[Part] = []
        for group, committed in groups.items():
            by_topic: dict[str, int] = {}
            for (topic, partition), offset in committed.items():
                by_topic[topic] = by_topic.get(topic, 0) + max(0, ends.get((topic, partition), offset) - offset)
            for topic, lag in sorted(by_topic.items()):
                consumers.append({"consumer": group, "kind": "consumer group", "topic": topic, "lag": lag,
                                  "what": "the raw archive's Connect sink" if group == archive_group else ""})
        for name, query in sorted(progress.items()):
            query_topics = sorted({t for s in query.get("sources", []) for t in _offsets(s.get("endOffset"))})
            consumers.append({"consumer": name, "kind": "streaming query", "topic": ", ".join(query_topics),
                              "lag": offsets_behind(query, lambda t, p: ends.get((t, p))),
                              "what": "speed layer"})
        for table, (topic, offsets) in sorted(pinot.items()):
            lag = sum(max(0, end - offsets.get(p, end)) for (t, p), end in ends.items() if t == topic)
            consumers.append({"consumer": table, "kind": "Pinot table", "topic": topic, "lag": lag,
                              "what": "speed layer's serving table"})
        missing = [dict(part, source=name) for name, part in sources.items() if _failed(part)]
        return {"available": True, "consumers": consumers, "unavailable_sources": missing,
                "total_lag": sum(int(c["lag"]) for c in consumers)}

    # Freshness -----------------------------------------------------------------------------------------------------
    def _pinot_broker(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a broker query we wrote (no caller values), with the broker's own deadline too."""
        response = httpx.post(f"{self._settings.pinot_broker_url}/query/sql", timeout=CALL_TIMEOUT_S,
                              json={"sql": sql, "queryOptions": f"timeoutMs={int(CALL_TIMEOUT_S * 1000)}"})
        response.raise_for_status()
        body = response.json()
        if body.get("exceptions"):
            raise RuntimeError("the broker reported query exceptions")
        table = body.get("resultTable") or {}
        names = (table.get("dataSchema") or {}).get("columnNames", [])
        return [dict(zip(names, row, strict=True)) for row in table.get("rows", [])]

    def freshness(self, now: datetime) -> Part:
        """How current the speed layer is: the streaming job's newest received event and each query's watermark,
        and the newest minute row Pinot serves."""
        part: Part = {"available": True}
        try:
            since = int((now - DAY).timestamp() * 1000)
            rows = self._pinot_broker("SELECT MAX(CAST(updated_at AS LONG)) AS updated, "
                                      "MAX(CAST(window_start AS LONG)) AS newest FROM metrics_minute "
                                      f"WHERE window_start >= {since}")
            updated, newest = (from_ms(rows[0]["updated"]), from_ms(rows[0]["newest"])) if rows else (None, None)
            part["pinot"] = {"available": True, "newest_minute": iso(newest), "newest_update": iso(updated),
                             "newest_update_age_s": seconds_between(updated, now)}
        except Exception as exc:  # noqa: BLE001 - the other source is still shown
            part["pinot"] = failure("Pinot's broker", exc)
        try:
            # /healthz reads Kafka's log ends before it answers: it gets the rest of the part's time.
            health = self._get_json(self._streaming_url("/healthz"), HEALTHZ_TIMEOUT_S)
            progress = self._get_json(self._streaming_url("/progress"))
            queries = []
            for name, query in sorted(progress.items()):
                watermark = parse_iso((query.get("eventTime") or {}).get("watermark"))
                watermark = watermark if watermark and watermark.year > 1970 else None
                queries.append({"query": name, "watermark": iso(watermark),
                                "watermark_delay_s": seconds_between(watermark, now),
                                "last_progress_age_s": seconds_between(parse_iso(query.get("timestamp")), now)})
            part["streaming"] = {"available": True, "ready": bool(health.get("ready")),
                                 "freshness_s": health.get("freshness_s"), "failed": sorted(health.get("failed") or {}),
                                 "queries": queries}
        except Exception as exc:  # noqa: BLE001 - the other source is still shown
            part["streaming"] = failure("the streaming job", exc)
        if _failed(part["pinot"]) and _failed(part["streaming"]):
            return unavailable(f"{part['streaming']['reason']}; {part['pinot']['reason']}")
        return part

    # Archive -------------------------------------------------------------------------------------------------------
    def _oldest_unarchived(self, behind: dict[tuple[str, int], int]) -> datetime | None:
        """The Kafka timestamp of the oldest record among the first uncommitted one of each lagging partition."""
        from confluent_kafka import Consumer, TopicPartition

        if not behind:
            return None
        consumer = Consumer({"bootstrap.servers": self._settings.kafka_bootstrap, "group.id": "lakepulse-api-ops",
                             "enable.auto.commit": False, "log_level": 0})
        try:
            consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in behind.items()])
            seen: dict[tuple[str, int], int] = {}
            deadline = time.monotonic() + CALL_TIMEOUT_S / 2
            while len(seen) < len(behind) and time.monotonic() < deadline:
                for message in consumer.consume(len(behind) * 10, timeout=0.5):
                    key = (str(message.topic()), int(message.partition() or 0))
                    if message.error() is None and key not in seen:
                        seen[key] = message.timestamp()[1]
            return from_ms(min(seen.values())) if seen else None
        finally:
            consumer.close()

    def archive(self, now: datetime) -> Part:
        """The raw archive's connector state, the records of events.raw it has not committed yet, and how old the
        oldest of them is (0 when it is caught up)."""
        from confluent_kafka import ConsumerGroupTopicPartitions

        name, group = self._archive_group()
        seen = states(connector_status(self._settings.kafka_connect_url, name))
        admin = self._kafka_admin()
        answer = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                   request_timeout=CALL_TIMEOUT_S)
        committed = {(tp.topic, tp.partition): int(tp.offset)
                     for tp in answer[group].result(timeout=CALL_TIMEOUT_S).topic_partitions or []}
        topic = self._settings.topic_events_raw
        ends = self.log_ends([topic])
        behind = {key: max(0, committed.get(key, 0)) for key, end in ends.items() if end > committed.get(key, 0)}
        lag = sum(end - max(0, committed.get(key, 0)) for key, end in ends.items())
        oldest = self._oldest_unarchived(behind)
        return {"available": True, "connector": name, "group": group, "topic": topic,
                "connector_state": seen[0] if seen else "absent", "task_states": seen[1:],
                "records_behind": lag, "partitions_behind": len(behind),
                "oldest_unarchived": iso(oldest),
                # 0 when caught up; None when records are behind but the oldest could not be read in time.
                "lag_s": seconds_between(oldest, now) if behind else 0.0}

    # Airflow -------------------------------------------------------------------------------------------------------
    def hourly(self, now: datetime) -> Part:
        """The hourly DAG: paused or not, its next run, and its last runs with their tasks."""
        dag = self._airflow.get(f"/dags/{HOURLY_DAG}")
        if dag is None:
            return unavailable(f"Airflow does not know the {HOURLY_DAG} DAG (yet)")
        runs = []
        for run in self._airflow.runs(HOURLY_DAG, RUNS_SHOWN):
            view = run_view(run, now)
            view["tasks"] = ordered_tasks(self._airflow.tasks(HOURLY_DAG, str(run["dag_run_id"])))
            runs.append(view)
        return {"available": True, "dag": HOURLY_DAG, "paused": bool(dag.get("is_paused")),
                "next_run": dag.get("next_dagrun_run_after"), "runs": runs,
                "airflow_url": f"{self._settings.airflow_url}/dags/{HOURLY_DAG}"}

    def backfills(self, now: datetime) -> list[Part]:
        """The backfill DAG's newest runs (SourceUnavailable when Airflow does not answer)."""
        try:
            return [run_view(run, now) for run in self._airflow.runs(BACKFILL_DAG, BACKFILLS_SHOWN)]
        except (httpx.HTTPError, OSError, KeyError, ValueError, RuntimeError, NotHere) as exc:
            log.warning("operations: listing backfill runs failed: %r", exc)
            raise SourceUnavailable(AIRFLOW_LAYER) from exc

    def backfill(self, run_id: str, now: datetime) -> Part | None:
        """One backfill run with its tasks' progress; None when the backfill DAG has no such run."""
        try:
            run = self._airflow.run(BACKFILL_DAG, run_id)
            if run is None:
                return None
            tasks = ordered_tasks(self._airflow.tasks(BACKFILL_DAG, run_id))
        except (httpx.HTTPError, OSError, KeyError, ValueError, RuntimeError, NotHere) as exc:
            log.warning("operations: reading backfill run %s failed: %r", run_id, exc)
            raise SourceUnavailable(AIRFLOW_LAYER) from exc
        view = run_view(run, now)
        done = sum(1 for t in tasks if t["state"] in ("success", "skipped"))
        view.update({"dag_id": BACKFILL_DAG, "tasks": tasks, "progress": {"done": done, "total": len(tasks)},
                     "airflow_url": f"{self._settings.airflow_url}/dags/{BACKFILL_DAG}/runs/{quote(run_id, safe='')}"})
        return view

    def start_backfill(self, plan: BackfillPlan, requested_by: str) -> str:
        """Trigger the backfill DAG for `plan` (as `lakepulse backfill` does); the run id."""
        try:
            run_id = self._airflow.api().trigger(BACKFILL_DAG, plan.conf())
        except (httpx.HTTPError, OSError, KeyError, ValueError, RuntimeError, NotHere) as exc:
            log.warning("operations: triggering %s failed: %r", BACKFILL_DAG, exc)
            raise SourceUnavailable(AIRFLOW_LAYER) from exc
        log.info("backfill %s of [%s, %s) metrics=%s reconcile=%s started by %s", run_id, iso(plan.start),
                 iso(plan.end), ",".join(plan.metrics) or "all", plan.reconcile, requested_by)
        return run_id

    # The seam ------------------------------------------------------------------------------------------------------
    def seam(self, now: datetime) -> Part:
        """The seam object: where the batch layer's final minutes end, when it last moved, over which range."""
        if self._s3 is None:
            s = self._settings
            self._s3 = boto3.client(
                "s3", endpoint_url=s.s3_endpoint, region_name=s.s3_region, aws_access_key_id=s.s3_access_key,
                aws_secret_access_key=s.s3_secret_key,
                config=Config(s3={"addressing_style": "path"}, connect_timeout=CALL_TIMEOUT_S,
                              read_timeout=CALL_TIMEOUT_S, retries={"mode": "standard", "max_attempts": 1}))
        bucket, key = split_uri(production_seam_uri(self._settings))
        try:
            body = orjson.loads(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except self._s3.exceptions.NoSuchKey:
            return {"available": True, "seam": None, "note": "no seam yet: the speed layer serves every minute"}
        seam, advanced = parse_iso(body.get("seam")), parse_iso(body.get("advanced_at"))
        return {"available": True, "seam": iso(seam), "advanced_at": iso(advanced),
                "range": body.get("range"), "behind_s": seconds_between(seam, now),
                "advanced_ago_s": seconds_between(advanced, now)}

    # Late events and dead letters ----------------------------------------------------------------------------------
    def late_events(self, now: datetime) -> Part:
        """Late events per tenant and producer (the streaming job's late-events topic), last hour and day."""
        part = tally_rows(self.late.read(TALLY_BUDGET_S), ("tenant_id", "source"), LATE_ROWS)
        return {**part, "topic": self.late.topic}

    def dead_letter_reasons(self, now: datetime) -> Part:
        """Dead letters per reason and refusing stage (ingest or streaming), last hour and day."""
        part = tally_rows(self.dead_letters.read(TALLY_BUDGET_S), ("reason", "stage"), REASON_ROWS)
        return {**part, "topic": self.dead_letters.topic}

    # Reconcile -----------------------------------------------------------------------------------------------------
    def _trino_rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        conn = trino.dbapi.connect(host=self._settings.trino_url, user=self._settings.trino_user,
                                   source="lakepulse-api-ops", request_timeout=CALL_TIMEOUT_S, max_attempts=1,
                                   session_properties={"query_max_run_time": f"{int(CALL_TIMEOUT_S)}s"},
                                   legacy_prepared_statements=False)
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            conn.close()

    def reconcile(self, now: datetime) -> Part:
        """Delta's and Pinot's minute rows and summed counts per metric over the latest final hour, and the tenants
        whose rows differ (a few per metric)."""
        seam = self._seam_reader.current() if self._seam_reader is not None else parse_iso(self.seam(now).get("seam"))
        if seam is None:
            return {"available": True, "range": None, "metrics": [], "differences": 0,
                    "note": "no seam yet: no minute is final, so there is nothing to compare"}
        start, end = seam - HOUR, seam
        delta = {(str(metric), str(tenant)): (int(rows), int(count or 0)) for metric, tenant, rows, count in
                 self._trino_rows(
                     f'SELECT metric, tenant_id, count(*), sum("count") FROM {DELTA_SCHEMA}.metrics_minute '
                     "WHERE window_date >= ? AND window_date <= ? AND window_start >= ? AND window_start < ? "
                     'AND "count" > 0 GROUP BY metric, tenant_id',
                     [start.date().isoformat(), (end - timedelta(microseconds=1)).date().isoformat(), start, end])}
        pinot = {(str(r["metric"]), str(r["tenant_id"])): (int(r["n"]), int(r["c"] or 0)) for r in self._pinot_broker(
            'SELECT metric, tenant_id, COUNT(*) AS n, SUM("count") AS c FROM metrics_minute WHERE window_start >= '
            f'{int(start.timestamp() * 1000)} AND window_start < {int(end.timestamp() * 1000)} AND "count" > 0 '
            f"GROUP BY metric, tenant_id LIMIT {RECONCILE_KEYS}")}
        by_metric: dict[str, Part] = {}
        for key in sorted(set(delta) | set(pinot)):
            metric, tenant = key
            d, p = delta.get(key, (0, 0)), pinot.get(key, (0, 0))
            row = by_metric.setdefault(metric, {"metric": metric, "delta_rows": 0, "pinot_rows": 0, "delta_count": 0,
                                                "pinot_count": 0, "differs": False, "tenants_differing": 0,
                                                "tenants": []})
            row["delta_rows"] += d[0]
            row["pinot_rows"] += p[0]
            row["delta_count"] += d[1]
            row["pinot_count"] += p[1]
            if d != p:
                row["differs"] = True
                row["tenants_differing"] += 1
                if len(row["tenants"]) < TENANTS_SHOWN:
                    row["tenants"].append(tenant)
        rows = list(by_metric.values())
        return {"available": True, "range": [iso(start), iso(end)], "metrics": rows,
                "differences": sum(1 for r in rows if r["differs"]),
                "note": "compared now: rows and summed counts per metric and tenant in Delta and Pinot over the latest "
                        "final hour (the hourly run's reconcile repairs single rows; Airflow keeps its report only "
                        "when the task fails)"}


def _failed(part: Any) -> bool:
    return isinstance(part, dict) and part.get("available") is False


def _offsets(value: Any) -> dict[str, Any]:
    """A streaming source's offsets (JSON text or an object) → {topic: {partition: offset}}."""
    parsed = orjson.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else {}
