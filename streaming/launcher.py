"""The speed layer as two JVMs behind one process: what the dashboard watches at normal priority, the rest niced.

On two cores, one Spark application running all seven queries lets a 4–6 s micro-batch of a slow query
(sketches, the prep join) take the CPU while a minute micro-batch waits: that wait is the freshness tail.
Spark cannot prioritise threads inside one JVM, the OS can prioritise processes. So `python -m streaming.job`
starts:

- `minute`: `python -m streaming.job` with `LAKEPULSE_STREAMING_QUERIES=minute,orders,couriers` (MINUTE_GROUP):
  the minute rows, and the live order and courier state the dashboard's funnel and couriers-waiting widgets push
  (niced, they reached the page 12 s after the order, and much later while a batch job ran);
- `state`: the same with the four other queries, under `nice -n <slow_niceness>`. The batch layer's spark-submit
  runs at the same niceness (`LAKEPULSE_BATCH_NICENESS`): at normal priority, an hourly run starting with the
  stack starved this JVM so long that its queries were not running within `up`'s 420 s.

This process serves the union of their /metrics, /healthz and /progress on the configured port, so the
supervisor, `lakepulse status`, the benches and the tests see one job as before. When a child exits the
other is stopped and this process exits non-zero (the supervisor restarts the pair; checkpoints make the
restart exact). A child whose launcher vanished stops itself (`exit_with_parent`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from streaming.config import StreamingSettings
from streaming.monitor import PROMETHEUS_TEXT, Answer, json_answer, serve_endpoints

log = logging.getLogger("lakepulse.streaming.launcher")
REPO = Path(__file__).resolve().parents[1]
PARENT_PID_ENV = "LAKEPULSE_STREAMING_PARENT_PID"
MINUTE_GROUP = ("minute", "orders", "couriers")


@dataclass
class Child:
    """One supervised JVM process and the port of its own metrics server."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)
        except httpx.HTTPError:
            return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(queries: tuple[str, ...], port: int, extra: dict[str, str]) -> dict[str, str]:
    """A child's environment: the parent's plus which queries to run and where to serve its metrics."""
    return {
        **os.environ,
        "LAKEPULSE_STREAMING_QUERIES": ",".join(queries),
        "LAKEPULSE_STREAMING_METRICS_HOST": "127.0.0.1",
        "LAKEPULSE_STREAMING_METRICS_PORT": str(port),
        PARENT_PID_ENV: str(os.getpid()),
        **extra,
    }


def spawn(name: str, queries: tuple[str, ...], niceness: int, extra_env: dict[str, str]) -> Child:
    port = free_port()
    command = [sys.executable, "-m", "streaming.job"]
    if niceness:
        command = ["nice", "-n", str(niceness), *command]
    # Same process group as the launcher: the supervisor's group stop (and a test's killpg) reach them; their
    # JVMs ignore SIGTERM (build_spark's jvm_ignores_sigterm), each child stops its own (stop_spark).
    proc = subprocess.Popen(command, cwd=REPO, env=child_env(queries, port, extra_env))
    log.info("started %s (pid %d, nice %d): %s", name, proc.pid, niceness, ", ".join(queries))
    return Child(name, port, proc)


def exit_with_parent(stop: Callable[[], None]) -> None:
    """When started by the launcher: call `stop` once the launcher is gone (e.g. killed with -9 alone), so
    no orphan JVM keeps the checkpoints and the ports."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(2)
        log.error("launcher %s is gone: stopping", parent)
        stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# The union of the children's endpoints -------------------------------------------------------------------
def merged_families(expositions: list[str]) -> Iterator[Metric]:
    """Prometheus families of several expositions, one per name with every child's samples (the children
    label per-query gauges by query and only one of them has the late/DLQ counters, so nothing collides)."""
    families: dict[str, Metric] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            if family.name in families:
                families[family.name].samples.extend(family.samples)
            else:
                families[family.name] = family
    yield from families.values()


def merged_health(bodies: list[dict[str, Any] | None], names: list[str]) -> dict[str, Any]:
    """One readiness body from the children's (a child that does not answer makes the job not ready)."""
    answered = [b for b in bodies if b is not None]
    freshness = [b["freshness_s"] for b in answered if b.get("freshness_s") is not None]
    return {
        "ready": len(answered) == len(bodies) and all(b.get("ready") for b in answered),
        "queries": {q: info for b in answered for q, info in b.get("queries", {}).items()},
        "failed": {q: why for b in answered for q, why in b.get("failed", {}).items()},
        "offsets_behind": sum(b.get("offsets_behind") or 0 for b in answered),
        "freshness_s": min(freshness) if freshness else None,
        "processes": {name: body is not None for name, body in zip(names, bodies, strict=True)},
    }


def serve_union(children: list[Child], host: str, port: int) -> ThreadingHTTPServer:
    """/metrics, /healthz and /progress of the job: the children's, combined at request time."""

    def answers(path: str) -> list[httpx.Response | None]:
        return [child.get(path) for child in children]

    def parsed(answer: httpx.Response | None) -> Any:
        try:
            return answer.json() if answer is not None else None
        except ValueError:
            return None

    def metrics() -> Answer:
        texts = [a.text for a in answers("/metrics") if a is not None and a.is_success]

        class Union:
            def collect(self) -> Iterator[Metric]:
                yield from merged_families(texts)

        registry = CollectorRegistry()
        registry.register(Union())  # type: ignore[arg-type]  # any object with collect() is a collector
        return generate_latest(registry), 200, PROMETHEUS_TEXT

    def progress() -> Answer:
        merged: dict[str, Any] = {}
        for part in map(parsed, answers("/progress")):
            merged.update(part or {})
        return json_answer(merged)

    def healthz() -> Answer:
        info = merged_health([parsed(a) for a in answers("/healthz")], [c.name for c in children])
        return json_answer(info, 200 if info["ready"] else 503)

    return serve_endpoints({"/metrics": metrics, "/progress": progress, "/healthz": healthz}, host, port)


def run(streaming: StreamingSettings, queries: tuple[str, ...], stop_wait_s: float = 55.0) -> int:
    """Start both children, serve their union, and exit when either ends (1) or on SIGTERM/SIGINT (0)."""
    slow = tuple(q for q in queries if q not in MINUTE_GROUP)
    children = [
        spawn(
            "minute",
            tuple(q for q in queries if q in MINUTE_GROUP),
            0,
            {
                "LAKEPULSE_STREAMING_LOCAL_TASK_SLOTS": str(streaming.minute_task_slots),
                "LAKEPULSE_STREAMING_SHUFFLE_PARTITIONS": str(streaming.minute_shuffle_partitions),
                "LAKEPULSE_STREAMING_ROCKSDB_BLOCK_CACHE_MB": str(streaming.minute_rocksdb_block_cache_mb),
            },
        ),
        spawn("state", slow, streaming.slow_niceness, {}),
    ]
    server = serve_union(children, streaming.metrics_host, streaming.metrics_port)
    log.info("metrics on http://%s:%d/metrics", streaming.metrics_host, streaming.metrics_port)
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping %s", signum, ", ".join(c.name for c in children))
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    exited: Child | None = None
    while not stopping.is_set() and exited is None:
        exited = next((c for c in children if c.proc.poll() is not None), None)
        stopping.wait(1.0)
    if exited is not None:
        log.error("%s exited with %s; stopping the other JVM", exited.name, exited.proc.returncode)
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + stop_wait_s
    for child in children:
        try:
            child.proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
    server.shutdown()
    failed = exited is not None or any(c.proc.returncode not in (0, -signal.SIGTERM) for c in children)
    return 1 if failed else 0
