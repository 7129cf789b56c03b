"""Airflow's REST API v2, as the backfill command and tests use it (token, unpause, trigger, poll)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

TERMINAL = {"success", "failed"}


@dataclass
class AirflowApi:
    """A logged-in client of one Airflow API server."""

    url: str
    token: str
    timeout: float = 30.0

    @classmethod
    def login(cls, url: str, username: str, password: str, timeout: float = 30.0) -> AirflowApi:
        """Exchange user/password for a JWT (`POST /auth/token`)."""
        response = httpx.post(f"{url}/auth/token", json={"username": username, "password": password},
                              timeout=timeout)
        response.raise_for_status()
        return cls(url, response.json()["access_token"], timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.url}/api/v2{path}", timeout=self.timeout,
                                 headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"Airflow {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the DAG processor has parsed the DAG (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", f"/dags/{dag_id}")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(3)

    def dags(self, tags: list[str] | None = None) -> list[dict[str, Any]]:
        """The DAGs the DAG processor knows (with these tags)."""
        return list(self._call("GET", "/dags", params={"tags": tags or [], "limit": 100})["dags"])

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def runs(self, dag_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The DAG's newest runs (by logical date)."""
        return list(self._call("GET", f"/dags/{dag_id}/dagRuns",
                               params={"order_by": "-logical_date", "limit": limit})["dag_runs"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def last_run(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's newest run (by logical date), or None."""
        runs = self.runs(dag_id, limit=1)
        return runs[0] if runs else None

    def trigger(self, dag_id: str, conf: dict[str, Any], logical_date: str | None = None) -> str:
        """Unpause the DAG and start a run with `conf` (at `logical_date`, RFC 3339, as the scheduler would
        for that date; None: a manual run now); returns the run id."""
        self.set_paused(dag_id, False)
        run = self._call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf})
        return str(run["dag_run_id"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """What a task instance of the run pushed (its return value by default), deserialised."""
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]

    def run_state(self, dag_id: str, run_id: str) -> tuple[str, dict[str, str]]:
        """The run's state and each task's state."""
        run = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        tasks = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return str(run["state"]), {t["task_id"]: str(t["state"]) for t in tasks.get("task_instances", [])}

    def wait(self, dag_id: str, run_id: str, timeout: float, on_change: Callable[[str, dict[str, str]], None]
             | None = None, poll: float = 5.0) -> str:
        """Poll until the run succeeds or fails (or `timeout` passes: TimeoutError); returns its state."""
        deadline = time.monotonic() + timeout
        last: tuple[str, dict[str, str]] | None = None
        while True:
            state = self.run_state(dag_id, run_id)
            if state != last and on_change:
                on_change(*state)
            last = state
            if state[0] in TERMINAL:
                return state[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {state[0]} after {timeout:.0f}s: {state[1]}")
            time.sleep(poll)
