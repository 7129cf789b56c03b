"""Processes the benchmarks start for themselves: a free port, and a uvicorn of one of our apps on it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def api_server(name: str, factory: str, workers: int, env: dict[str, str], logs: Path) -> Iterator[str]:
    """A uvicorn of `factory` on a free port (its own process group, stopped on exit); yields its base URL."""
    port = free_port()
    prom = Path(tempfile.mkdtemp(prefix=f"bench-api-{name}-prom-"))
    answers = Path(tempfile.mkdtemp(prefix=f"bench-api-{name}-answers-"))  # the workers share answers, as in the stack
    log = (logs / f"{name}.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--no-access-log", "--log-level", "warning"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom), "LAKEPULSE_API_SHARED_ANSWERS_DIR": str(answers),
             **env},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit(f"{name} server exited with {server.returncode}; see {logs / f'{name}.log'}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} server not ready after 120 s; see {logs / f'{name}.log'}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
        shutil.rmtree(prom, ignore_errors=True)
        shutil.rmtree(answers, ignore_errors=True)
