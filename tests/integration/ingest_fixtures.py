"""Helpers for the ingest integration tests: the real API under uvicorn, test topics, a throwaway broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lakepulse.auth.tokens import mint_token
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.kafka import Kafka, kafka_answers
from lakepulse.settings import Settings

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def producer_token(settings: Settings, tenants: Iterable[str], ttl: timedelta = timedelta(minutes=30)) -> str:
    """A local producer token for `tenants`, as a service posting those restaurants' events holds one."""
    return mint_token(settings, role="producer", tenants=sorted(set(tenants)), ttl=ttl, subject="ingest-test")


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.5) -> None:  # noqa: ANN001
    """Poll `condition` until true; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s}s")
        time.sleep(interval_s)


@contextmanager
def topics(bootstrap: str, names: list[str], partitions: int = 3) -> Iterator[list[str]]:
    """Create test topics for the duration of a test, then delete them."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    for future in admin.create_topics([NewTopic(name, partitions, 1) for name in names]).values():
        future.result(30)
    try:
        yield names
    finally:
        for future in admin.delete_topics(names).values():
            with suppress(KafkaException):
                future.result(30)


def read_topic(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0
) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of every record of `topic`: waits until `expected` arrived, then 2 s more for extras."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ingest-test-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    records: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                records.append((message.key(), message.value()))
            if len(records) >= expected:
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return records


@dataclass
class IngestServer:
    """The ingest API as production runs it: uvicorn with the app factory, in its own process."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM (uvicorn flushes the producer on shutdown), bounded wait, then SIGKILL."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_ingest_server(env: dict[str, str], log_path: Path, workers: int = 1) -> IngestServer:
    """Start `uvicorn --factory lakepulse.ingest.app:create_app` with LAKEPULSE_* overrides; wait for it."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "lakepulse.ingest.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
    ]  # fmt: skip
    log = log_path.open("wb")
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **env, "LAKEPULSE_INGEST_PORT": str(port)},
        stdout=log,
        stderr=log,
    )
    server = IngestServer(f"http://127.0.0.1:{port}", process)

    def answers() -> bool:
        assert process.poll() is None, f"uvicorn exited; see {log_path}"
        try:
            return httpx.get(f"{server.url}/openapi.json", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, READY_TIMEOUT_S, f"ingest API on {server.url}")
    return server


class ThrowawayKafka:
    """A one-node KRaft broker of our own: the stack's jars and config code, our own ports and data dir.

    A test may stop and restart it without touching the shared broker.
    """

    def __init__(self, state_dir: Path, base: Settings) -> None:
        self.settings = base.model_copy(
            update={
                "kafka_bootstrap": f"127.0.0.1:{free_port()}",
                "kafka_controller_port": free_port(),
                "kafka_connect_url": f"http://127.0.0.1:{free_port()}",
                "state_dir": state_dir,
            }
        )
        self.bootstrap = self.settings.kafka_bootstrap
        self.ctx = Context(settings=self.settings, repo=REPO)
        kafka = Kafka()
        kafka.prepare(self.ctx)  # formats the KRaft storage, as `lakepulse up` does
        service = next(s for s in kafka.services(self.ctx) if s.name == "kafka")
        self.command = service.command
        self.log_path = state_dir / "throwaway-kafka.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the broker (same data directory every time) and wait until it answers."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=log)
        wait_until(
            lambda: kafka_answers(self.bootstrap), READY_TIMEOUT_S, f"throwaway Kafka on {self.bootstrap}"
        )

    def stop(self) -> None:
        """Stop the broker (SIGTERM, bounded wait, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
