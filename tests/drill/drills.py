"""The fault drills of issue 21: kill -9 each component under a steady SDK load, let supervisord restart it, then
prove from an independent recount that nothing was lost or counted twice.

One load of order_placed events (dated when they are made) runs through the ingest API with the SDK for the
whole drill. Each component gets a window with a tenant of its own (`drill-<hex>-rest-000N`): the load writes
that tenant from a little before the kill until the whole stack has settled again, so every figure can be
attributed to the window its events were sent in. The recount is what the SDK acknowledged (accepted event ids).

After the last kill the load stops and the SDK flushes; then the raw archive must hold exactly the acknowledged
ids, and after a backfill of the drill's range through Airflow (which also reconciles Pinot) Trino's seam view and
Pinot must show the recount per tenant.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from lakepulse import archive
from lakepulse.auth.tokens import mint_token
from lakepulse.batch.airflow_api import TERMINAL, AirflowApi
from lakepulse.batch_cli import BACKFILL_DAG
from lakepulse.platform import stack as platform_stack
from lakepulse.platform.components.airflow import HOURLY_DAG, airflow_health, airflow_password
from lakepulse.platform.components.base import Context, Service
from lakepulse.platform.components.connect_sink import connector_config, connector_status, states
from lakepulse.platform.supervisor import Supervisor
from lakepulse.sdk import BatchResult, BufferFullError, DeliveryError, IngestClient
from lakepulse.settings import Settings
from tests.e2e.served import archived_ids, free_tick, pinot_orders
from tests.e2e.test_product_runs_itself import seam_view_totals
from tests.stack_events import order

# Supervisord program → what the drill kills. Order matters only for the story: the serving engines last, and the
# scheduler last of all, since its window waits for an hourly run to reach a Spark task.
DRILLS: list[tuple[str, str]] = [
    ("kafka", "Kafka broker (KRaft)"),
    ("connect", "Kafka Connect worker (raw-archive sink)"),
    ("streaming", "Spark streaming job (driver + JVMs)"),
    ("pinot", "Pinot controller/broker/server JVM"),
    ("minio", "MinIO"),
    ("ingest", "ingest API"),
    ("trino", "Trino coordinator"),
    ("airflow-scheduler", "Airflow scheduler mid hourly run"),
]
RATE = float(os.environ.get("LAKEPULSE_DRILL_RATE", "100"))  # events/s, steady for the whole drill
ONLY = [n for n in os.environ.get("LAKEPULSE_DRILLS", "").split(",") if n]  # a subset, while developing
RESULTS = Path(os.environ.get("LAKEPULSE_DRILL_RESULTS", "/tmp/drill_results"))  # .md and .json
LEAD_S = 15.0  # load on a window's tenant before its kill
TAIL_S = 15.0  # and after the stack has settled again
# Bounded waits, not timing assertions (the measured times are reported).
RECOVER_TIMEOUT_S = 600.0
SETTLE_TIMEOUT_S = 600.0
SPARK_TASK_WAIT_S = 1200.0
HOURLY_WAIT_S = 1800.0
FLUSH_TIMEOUT_S = 900.0
ARCHIVE_WAIT_S = 420.0
BACKFILL_WAIT_S = 1800.0
PINOT_WAIT_S = 180.0
# The SDK keeps retrying through the longest outage a drill causes (~5 s apart at most: ~15 min), so nothing it
# was given is abandoned while a component restarts.
SDK_RETRIES = 200
SPARK_TASKS = {"bronze", "gold", "quality", "publish", "reconcile", "late_hours"}
SPARK_JOBS_DIR = str(Path(__file__).resolve().parents[2] / "spark_jobs")


class DrillError(RuntimeError):
    """A component did not come back, or a step of the drill could not run."""


def say(message: str) -> None:
    """Progress on stdout (`make drill` runs pytest with -s): the drill takes tens of minutes."""
    print(f"[drill {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- processes (read from /proc: the drill kills exactly what it names) ----

def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, pgid) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    return sorted(p for p in _pids() if (st := _stat(p)) is not None and st[0] == pid)


def group_members(pgid: int) -> list[int]:
    return sorted(p for p in _pids() if (st := _stat(p)) is not None and st[1] == pgid)


def ingest_workers(master: int) -> list[int]:
    """uvicorn's worker processes under its master (multiprocessing spawn children, not the resource tracker)."""
    return [c for c in children(master) if "spawn_main" in cmdline(c)]


def spark_job_processes() -> set[int]:
    """Processes running one of spark_jobs/ (what an hourly run's spark-submit tasks start)."""
    return {p for p in _pids() if SPARK_JOBS_DIR in cmdline(p)}


def poll(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> float:
    """Seconds until `check()` holds; DrillError after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise DrillError(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - started


def settle_value(seen: Callable[[], Any], wanted: Any, timeout: float, interval: float = 5.0) -> Any:
    """Poll until `seen()` equals `wanted` (bounded); the last value seen either way, so the figures get reported."""
    deadline = time.monotonic() + timeout
    while (last := seen()) != wanted and time.monotonic() < deadline:
        time.sleep(interval)
    return last


# ---- the load ----

class Load:
    """order_placed events at a steady rate for the current window's tenant, sent with the SDK; remembers what was
    sent (event id → tenant, amount) and which ids the API acknowledged."""

    def __init__(self, ingest_url: str, token: str, tenant: str, rate: float) -> None:
        self.tenant = tenant  # switched by the drill between windows
        self.rate = rate
        self.sent: dict[str, tuple[str, float]] = {}
        self.acked: set[str] = set()
        self.not_queued = 0  # the SDK's buffer was full (never sent, so never acknowledged)
        self.delivery_error = ""
        self._rng = random.Random(21)
        self._stop = threading.Event()
        self.client = IngestClient(ingest_url, token=token, batch_size=200, max_retries=SDK_RETRIES,
                                   max_backoff_s=5.0, timeout_s=30.0, on_result=self._acknowledged)
        self._thread = threading.Thread(target=self._run, name="drill-load", daemon=True)

    def _acknowledged(self, result: BatchResult) -> None:
        self.acked.update(result.accepted_ids)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        tick, due = 0.1, 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            due += self.rate * tick
            while due >= 1:
                due -= 1
                amount = self._rng.randrange(4, 240) / 4  # quarters: sums stay exact in binary floating point
                event = order(self.tenant, datetime.now(UTC), amount, source="drill")
                self.sent[event["event_id"]] = (self.tenant, amount)
                try:
                    self.client.send(event)
                except BufferFullError:
                    del self.sent[event["event_id"]]
                    self.not_queued += 1
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> dict[str, Any]:
        """Stop making events, flush the SDK (bounded), close it; its final stats."""
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.client.flush(FLUSH_TIMEOUT_S)
        except (DeliveryError, TimeoutError) as err:
            self.delivery_error = f"{type(err).__name__}: {err}"
        finally:
            self.client.close()
        return {**asdict(self.client.stats), "not_queued": self.not_queued, "delivery_error": self.delivery_error}

    def recount(self, tenant: str) -> tuple[set[str], int, float]:
        """The tenant's acknowledged ids, their count and their gross sales."""
        ids = {i for i in self.acked if self.sent.get(i, ("", 0.0))[0] == tenant}
        return ids, len(ids), sum(self.sent[i][1] for i in ids)


# ---- one drill ----

@dataclass
class Window:
    """One component's drill: what was killed, how long it took to come back, and (later) its figures."""

    component: str
    what: str
    tenant: str
    killed: str = ""
    killed_pids: list[int] = field(default_factory=list)
    started_at: str = ""
    killed_at: str = ""
    ended_at: str = ""
    running_s: float | None = None  # kill → supervisord shows a new pid RUNNING (ingest worker: a new worker)
    ready_s: float | None = None  # kill → that, and the component's readiness check passes
    settled_s: float | None = None  # kill → every program RUNNING and ready, the archive connector's tasks RUNNING
    restarted_too: list[str] = field(default_factory=list)  # other programs with a new pid after the kill
    notes: list[str] = field(default_factory=list)
    error: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class DrillRun:
    """Everything one `make drill` measured (also written to RESULTS.{json,md})."""

    prefix: str
    rate: float
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    windows: list[Window] = field(default_factory=list)
    sdk: dict[str, Any] = field(default_factory=dict)  # the SDK's final stats
    hourly: dict[str, Any] = field(default_factory=dict)
    backfill: dict[str, Any] = field(default_factory=dict)
    archive_wait_s: float | None = None
    healthy_after: bool = False
    unhealthy: list[str] = field(default_factory=list)
    error: str = ""


class Drill:
    """Runs the windows one after another under one load, then the checks."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.sup = Supervisor(ctx)
        self.services: dict[str, Service] = {svc.name: svc for _, svc in platform_stack.all_services(ctx)}
        self.api = AirflowApi.login(self.settings.airflow_url, self.settings.airflow_user, airflow_password(ctx))
        self.connector, _ = connector_config(ctx.repo, self.settings)
        prefix = f"drill-{uuid.uuid4().hex[:8]}-"
        chosen = [(n, w) for n, w in DRILLS if not ONLY or n in ONLY]
        self.run = DrillRun(prefix, RATE, windows=[Window(name, what, f"{prefix}rest-{i:04d}")
                                                   for i, (name, what) in enumerate(chosen, start=1)])
        # The programs that must be RUNNING again after every kill: those running now (not the stopped demo).
        self.baseline = {n for n, p in self.sup.processes().items() if p["statename"] == "RUNNING"}
        missing = {n for n, _ in chosen} - self.baseline
        if missing:
            raise DrillError(f"not running before the drill: {sorted(missing)}")
        self.hourly_run_id = ""
        self.load: Load | None = None

    def pids(self) -> dict[str, int]:
        return {n: int(p.get("pid") or 0) for n, p in self.sup.processes().items()}

    # -- the whole thing --

    def execute(self) -> DrillRun:
        """Every window under one load, then the checks; the results are written whatever happens."""
        run = self.run
        started = time.monotonic()
        run.started_at = now_iso()
        first_event = datetime.now(UTC)
        token = mint_token(self.settings, role="producer", tenants=[w.tenant for w in run.windows],
                           ttl=timedelta(hours=4), subject="drill")
        load = Load(f"http://{self.settings.bind_host}:{self.settings.ingest_port}", token, run.windows[0].tenant,
                    RATE)
        self.load = load
        load.start()
        try:
            for window in run.windows:
                load.tenant = window.tenant
                self.drill(window)
            say("stopping the load and flushing the SDK")
            run.sdk = load.stop()
            say(f"SDK: {run.sdk}")
            self.verify(load, first_event, datetime.now(UTC))
        except Exception as err:
            run.error = f"{type(err).__name__}: {err}"
            raise
        finally:
            if not run.sdk:
                run.sdk = load.stop()
            self.finish(started)
        return run

    def finish(self, started: float) -> None:
        run = self.run
        run.unhealthy = self.unhealthy()
        run.healthy_after = not run.unhealthy
        run.finished_at = now_iso()
        run.duration_s = round(time.monotonic() - started, 1)
        write_results(run)

    # -- one window --

    def drill(self, w: Window) -> None:
        w.started_at = now_iso()
        acked = len(self.load.acked) if self.load else 0
        say(f"{w.component}: window of {w.tenant} (load {RATE:.0f}/s; {acked} acknowledged so far)")
        time.sleep(LEAD_S)
        try:
            if w.component == "airflow-scheduler":
                self.start_hourly_run(w)
            before = self.pids()
            orphans_at_kill = spark_job_processes()
            t0 = time.monotonic()
            kill_wall = datetime.now(UTC)
            w.killed_at = kill_wall.isoformat(timespec="seconds")
            if w.component == "ingest" and len(workers := ingest_workers(before["ingest"])) > 1:
                victim = workers[0]
                w.killed = (f"one of {len(workers)} uvicorn workers (pid {victim}; the master, "
                            f"{before['ingest']}, kept)")
                w.killed_pids = [victim]
                say(f"{w.component}: kill -9 {w.killed}")
                os.kill(victim, signal.SIGKILL)
                w.running_s = poll(lambda: self.worker_replaced(before["ingest"], victim, len(workers)),
                                   RECOVER_TIMEOUT_S, "uvicorn replacing its worker", 0.25)
            else:
                pid = before[w.component]
                pgid = os.getpgid(pid)
                w.killed_pids = group_members(pgid)
                # A process that is exiting already has an empty command line.
                programs = sorted({c.split(" ")[0].rsplit("/", 1)[-1] for p in w.killed_pids if (c := cmdline(p))})
                w.killed = f"process group {pgid}: {len(w.killed_pids)} process(es) ({', '.join(programs)})"
                say(f"{w.component}: kill -9 {w.killed}")
                os.killpg(pgid, signal.SIGKILL)
                w.running_s = poll(lambda: self.restarted(w.component, pid), RECOVER_TIMEOUT_S,
                                   f"supervisord restarting {w.component}", 0.25)
            ready = self.services[w.component].ready
            if w.component == "airflow-scheduler":
                w.ready_s = poll(lambda: ready() and scheduler_beat_after(self.settings.airflow_url, kill_wall),
                                 RECOVER_TIMEOUT_S, "the new scheduler heartbeating", 0.5)
            else:
                w.ready_s = poll(ready, RECOVER_TIMEOUT_S, f"{w.component} readiness", 0.5)
            w.ready_s = round(w.ready_s + w.running_s, 1)
            w.running_s = round(w.running_s, 1)
            say(f"{w.component}: RUNNING again after {w.running_s} s, ready after {w.ready_s} s")
            try:
                self.wait_settled()
                w.settled_s = round(time.monotonic() - t0, 1)
                say(f"{w.component}: stack settled after {w.settled_s} s")
            except DrillError as err:
                # The killed component is back; something else is not. Recorded, and the next drills still run:
                # the final checks show what it cost.
                w.error = str(err)
                say(f"{w.component}: {err}")
            after = self.pids()
            w.restarted_too = sorted(n for n in self.baseline - {w.component} if after.get(n) != before.get(n))
            if w.component == "airflow-scheduler":
                # The task processes run in process groups of their own (Airflow's supervisor calls setpgid).
                alive = orphans_at_kill & spark_job_processes()
                w.notes.append(f"{len(orphans_at_kill)} spark job process(es) ran at the kill; {len(alive)} of them "
                               "still alive once the stack settled")
        except Exception as err:
            w.error = f"{type(err).__name__}: {err}"
            raise
        finally:
            time.sleep(TAIL_S)
            w.ended_at = now_iso()

    def restarted(self, name: str, old_pid: int) -> bool:
        info = self.sup.processes().get(name, {})
        return info.get("statename") == "RUNNING" and int(info.get("pid") or 0) not in (0, old_pid)

    def worker_replaced(self, master: int, victim: int, count: int) -> bool:
        info = self.sup.processes().get("ingest", {})
        workers = ingest_workers(master)
        return (info.get("statename") == "RUNNING" and int(info.get("pid") or 0) == master
                and victim not in workers and len(workers) >= count)

    def unhealthy(self) -> list[str]:
        """Programs of the baseline not RUNNING or not ready, and the archive connector if a task is not RUNNING."""
        procs = self.sup.processes()
        bad = [n for n in sorted(self.baseline)
               if procs.get(n, {}).get("statename") != "RUNNING" or not self.services[n].ready()]
        connector = states(connector_status(self.settings.kafka_connect_url, self.connector))
        if len(connector) < 2 or any(s != "RUNNING" for s in connector):
            bad.append(f"{self.connector} connector {connector}")
        return bad

    def wait_settled(self) -> None:
        last: list[str] = []

        def settled() -> bool:
            nonlocal last
            last = self.unhealthy()
            return not last

        try:
            poll(settled, SETTLE_TIMEOUT_S, "the stack settling", 2.0)
        except DrillError as err:
            raise DrillError(f"{err}; still not healthy: {last}") from err

    # -- the hourly run the scheduler drill kills into --

    def start_hourly_run(self, w: Window) -> None:
        """Trigger lakepulse_hourly for a free tick (as the e2e suite does) and wait until a Spark task runs."""
        tick = free_tick(self.api, datetime.now(UTC))
        self.hourly_run_id = self.api.trigger(HOURLY_DAG, {"lookback_hours": 0}, tick.isoformat())
        self.run.hourly = {"run_id": self.hourly_run_id, "tick": tick.isoformat()}
        seen: dict[str, Any] = {}

        def spark_task_running() -> bool:
            state, tasks = self.api.run_state(HOURLY_DAG, self.hourly_run_id)
            if state in TERMINAL:
                raise DrillError(f"hourly run {self.hourly_run_id} ended {state} before a Spark task ran: {tasks}")
            running = sorted(t for t, s in tasks.items() if t in SPARK_TASKS and s == "running")
            seen.update(state=state, running=running)
            return bool(running)

        say(f"hourly run {self.hourly_run_id} triggered for tick {tick:%Y-%m-%d %H:%M}; waiting for a Spark task")
        waited = poll(spark_task_running, SPARK_TASK_WAIT_S, f"a Spark task of {self.hourly_run_id} running", 3.0)
        # A few seconds in, so spark-submit has started its JVM.
        time.sleep(5)
        self.run.hourly["killed_during"] = seen.get("running", [])
        w.notes.append(f"hourly run {self.hourly_run_id} (tick {tick:%H:%M}) killed during "
                       f"{', '.join(seen.get('running', []))}, {waited:.0f}s after the trigger")

    # -- after the last kill --

    def verify(self, load: Load, first_event: datetime, last_event: datetime) -> None:
        run = self.run
        try:
            self.wait_settled()
        except DrillError as err:
            say(f"checking anyway: {err}")  # finish() records what is unhealthy
        tenants = {w.tenant for w in run.windows}
        acked = {w.tenant: load.recount(w.tenant) for w in run.windows}
        every_acked = set().union(*(ids for ids, _, _ in acked.values()))
        # 1. The raw archive holds every acknowledged event (dedup by event id) and nothing else of these tenants.
        start, end = first_event - timedelta(minutes=10), datetime.now(UTC) + timedelta(minutes=10)
        say(f"waiting for the raw archive to hold the {len(every_acked)} acknowledged events")
        t0 = time.monotonic()
        settle_value(lambda: archived_ids(self.settings, tenants, start, end) >= every_acked, True, ARCHIVE_WAIT_S)
        run.archive_wait_s = round(time.monotonic() - t0, 1)
        in_archive = archived_by_tenant(self.settings, tenants, start, end)
        for w in run.windows:
            ids, n, gross = acked[w.tenant]
            mine = in_archive.get(w.tenant, set())
            w.figures.update(sent=sum(1 for t, _ in load.sent.values() if t == w.tenant), acknowledged=n,
                             gross_sales=gross, archived_unique=len(mine), archive_missing=len(ids - mine),
                             archive_unacknowledged=len(mine - ids),
                             pinot_before_reconcile=list(pinot_orders(self.settings, w.tenant)))
        # 2. The hourly run the scheduler drill killed into ends (its tasks are re-run after the heartbeat timeout).
        if self.hourly_run_id:
            say(f"waiting for hourly run {self.hourly_run_id}")
            t0 = time.monotonic()
            try:
                state = self.api.wait(HOURLY_DAG, self.hourly_run_id, HOURLY_WAIT_S)
            except TimeoutError as err:
                state = f"timeout: {err}"
            run.hourly.update(state=state, waited_s=round(time.monotonic() - t0, 1),
                              tasks=self.api.run_state(HOURLY_DAG, self.hourly_run_id)[1])
        # 3. A backfill of the drill's range through Airflow, reconciling Pinot; then the served numbers.
        lo = first_event.replace(second=0, microsecond=0) - timedelta(minutes=1)
        hi = last_event.replace(second=0, microsecond=0) + timedelta(minutes=2)
        conf = {"start": rfc(lo), "end": rfc(hi), "metrics": [], "reconcile": True, "lake_root": ""}
        t0 = time.monotonic()
        backfill_id = self.api.trigger(BACKFILL_DAG, conf)
        say(f"backfill {backfill_id} of [{conf['start']}, {conf['end']}) triggered")
        try:
            state = self.api.wait(BACKFILL_DAG, backfill_id, BACKFILL_WAIT_S)
        except TimeoutError as err:
            state = f"timeout: {err}"
        run.backfill = {"run_id": backfill_id, "conf": conf, "state": state,
                        "duration_s": round(time.monotonic() - t0, 1)}
        say(f"backfill: {state}; reading Trino's seam view and Pinot")
        for w in run.windows:
            _, n, gross = acked[w.tenant]
            totals = seam_view_totals(self.settings, w.tenant)
            seam_n = sum(c for (_, metric), (c, _) in totals.items() if metric == "orders_placed")
            seam_sum = sum(s for (_, metric), (_, s) in totals.items() if metric == "gross_sales")
            pinot = settle_value(partial(pinot_orders, self.settings, w.tenant), (n, gross), PINOT_WAIT_S)
            w.figures.update(seam_view=[seam_n, seam_sum],
                             seam_view_layers={f"{layer}/{metric}": list(v) for (layer, metric), v in totals.items()},
                             pinot_after_reconcile=list(pinot))
            w.figures.update(lost_doubled(w.figures))


def lost_doubled(f: dict[str, Any]) -> dict[str, Any]:
    """Events lost and doubled of one window: the worst of the archive, Trino's seam view and Pinot after
    reconcile against the acknowledged recount (counts; sums are checked too)."""
    n, gross = f["acknowledged"], f["gross_sales"]
    served = [f["seam_view"], f["pinot_after_reconcile"]]
    lost = max([f["archive_missing"], *(n - c for c, _ in served), 0])
    doubled = max([*(c - n for c, _ in served), 0])
    sums_match = all(abs(s - gross) < 1e-6 * max(1.0, gross) for _, s in served)
    return {"lost": lost, "doubled": doubled, "sums_match": sums_match}


def archived_by_tenant(settings: Settings, tenants: set[str], start: datetime, end: datetime) -> dict[str, set[str]]:
    """tenant → the distinct event ids the raw archive holds for it (occurred_at in [start, end))."""
    table = archive.read_events(settings, start, end, columns=["tenant_id", "event_id"],
                                where=pc.field("tenant_id").isin(sorted(tenants)))
    found: dict[str, set[str]] = {}
    for tenant, event_id in zip(table.column("tenant_id").to_pylist(), table.column("event_id").to_pylist(),
                                strict=True):
        found.setdefault(tenant, set()).add(event_id)
    return found


def rfc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def scheduler_beat_after(url: str, moment: datetime) -> bool:
    """Whether Airflow's health report shows a scheduler heartbeat after `moment` (the killed one's last beat
    stays "healthy" for a while, so the health status alone does not prove the new one runs)."""
    beat = airflow_health(url).get("scheduler", {}).get("latest_scheduler_heartbeat")
    try:
        return beat is not None and datetime.fromisoformat(beat) > moment
    except ValueError:
        return False


# ---- the report ----

def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def table(run: DrillRun) -> str:
    """The markdown table BENCHMARKS.md gets, plus the raw figures per window."""
    lines = ["| component | what was killed | time to recover | events lost | events doubled |",
             "|---|---|---|---|---|"]
    for w in run.windows:
        f = w.figures
        recover = (f"{_seconds(w.ready_s)} (RUNNING after {_seconds(w.running_s)}; stack settled after "
                   f"{_seconds(w.settled_s)})")
        if w.error:
            recover += f" — {w.error}"
        lines.append(f"| {w.component} | {w.what}: {w.killed or '—'} | {recover} | {f.get('lost', '—')} | "
                     f"{f.get('doubled', '—')} |")
    lines += ["", "| window tenant | sent | acknowledged | archived (unique) | Pinot before reconcile | "
                  "Trino seam view after backfill | Pinot after reconcile | gross sales (recount) | sums match |",
              "|---|---|---|---|---|---|---|---|---|"]
    for w in run.windows:
        f = w.figures
        if "acknowledged" not in f:
            continue

        def pair(key: str, fig: dict[str, Any] = f) -> str:
            return f"{fig[key][0]} / {fig[key][1]:.2f}" if key in fig else "—"

        lines.append(f"| {w.tenant} ({w.component}) | {f['sent']} | {f['acknowledged']} | {f['archived_unique']} | "
                     f"{pair('pinot_before_reconcile')} | {pair('seam_view')} | {pair('pinot_after_reconcile')} | "
                     f"{f['gross_sales']:.2f} | {f.get('sums_match', '—')} |")
    notes = [f"- {w.component}: restarted too: {', '.join(w.restarted_too)}" for w in run.windows if w.restarted_too]
    notes += [f"- {w.component}: {note}" for w in run.windows for note in w.notes]
    lines += ["", f"Load: {run.rate:.0f} order events/s through the SDK for {run.duration_s / 60:.0f} min in all; "
                  f"SDK: {run.sdk}.",
              f"Hourly run killed into: {run.hourly or '—'}.",
              f"Backfill: {run.backfill or '—'}; archive complete {_seconds(run.archive_wait_s)} after the flush.",
              f"Stack healthy after the drill: {run.healthy_after} {run.unhealthy or ''}",
              *(["", f"Error: {run.error}"] if run.error else []), "", *notes]
    return "\n".join(lines) + "\n"


def write_results(run: DrillRun) -> None:
    RESULTS.with_suffix(".json").write_text(json.dumps(asdict(run), indent=2, default=str))
    text = table(run)
    RESULTS.with_suffix(".md").write_text(f"# Fault drills {run.started_at}\n\n{text}")
    print("\n" + text)
