"""`lakepulse up` and `down --purge` as sequences of effects: what starts, bootstraps and is deleted when.

The supervisor and the components are replaced by recorders: these tests are about the order `stack.up`
imposes and what `stack.down` deletes. The real start on a fresh state is what CI's first phase runs.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from lakepulse.platform import stack
from lakepulse.platform.components.base import Component, Context, Service
from lakepulse.settings import Settings


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return Context(Settings(cache_dir=tmp_path / "cache", state_dir=tmp_path / "state"), repo=tmp_path)


class Recorded(Component):
    """A component whose services and bootstrap only write to a shared journal."""

    def __init__(self, name: str, journal: list[str], orders: dict[str, int], needs: tuple[str, ...] = ()) -> None:
        self.name, self.journal, self.orders, self.bootstrap_needs = name, journal, orders, needs

    def services(self, ctx: Context) -> list[Service]:
        return [Service(name=n, command=["true"], url="", order=o,
                        ready=lambda n=n: f"start {n}" in self.journal) for n, o in self.orders.items()]

    def bootstrap(self, ctx: Context) -> None:
        self.journal.append(f"bootstrap {self.name}")


class RecordingSupervisor:
    """Supervisor stand-in: starting a program is a journal line; state follows it."""

    journal: list[str] = []

    def __init__(self, ctx: Context) -> None:
        pass

    def render(self, services: list[Service]) -> None:
        pass

    def start_daemon(self) -> None:
        pass

    def start(self, name: str) -> None:
        self.journal.append(f"start {name}")

    def stop(self, name: str) -> None:
        self.journal.append(f"stop {name}")

    def state(self, name: str) -> str:
        return "RUNNING" if f"start {name}" in self.journal else "STOPPED"

    def is_running(self) -> bool:
        return True

    def stop_together(self, names: list[str], timeout: float) -> None:
        self.journal.append(f"stop wave {sorted(names)}")

    def shutdown(self) -> None:
        self.journal.append("shutdown")


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    comps = [
        Recorded("minio", lines, {"minio": 5}),
        Recorded("kafka", lines, {"kafka": 10, "connect": 20}, needs=("kafka",)),
        Recorded("pinot", lines, {"pinot": 40}),
        Recorded("trino", lines, {"trino": 60}),
        Recorded("lake", lines, {}, needs=("minio", "trino")),
        Recorded("streaming", lines, {"streaming": 60}),
        Recorded("apps", lines, {"ingest": 30, "demo": 70}),
    ]
    monkeypatch.setattr(stack, "components", lambda: comps)
    monkeypatch.setattr(stack, "provision", lambda *a, **k: None)
    monkeypatch.setattr(stack, "_wait_ready", lambda *a, **k: None)
    RecordingSupervisor.journal = lines
    monkeypatch.setattr(stack, "Supervisor", RecordingSupervisor)
    return lines


def test_everything_a_service_needs_exists_before_it_starts(ctx: Context, journal: list[str]) -> None:
    stack.up(ctx)
    at = journal.index
    # Topics before anything that reads or writes them: Pinot's tables, the streaming job, ingest, demo.
    for reader in ("start pinot", "start streaming", "start ingest", "start demo"):
        assert at("bootstrap kafka") < at(reader), journal
    assert at("bootstrap minio") < at("start kafka")  # the bucket before Connect's sink can upload
    assert at("bootstrap pinot") < at("start trino")  # Pinot tables before Trino's catalog is queried
    assert at("bootstrap lake") > at("start trino") and at("bootstrap lake") < at("start demo")
    assert journal.count("bootstrap kafka") == 1 and journal.count("bootstrap lake") == 1


def test_no_demo_skips_and_stops_the_demo_traffic(ctx: Context, journal: list[str]) -> None:
    journal.append("start demo")  # running from an earlier `make run`
    stack.up(ctx, demo=False)
    assert "stop demo" in journal and journal.count("start demo") == 1


def test_down_stops_in_waves_in_the_reverse_of_the_start_order(ctx: Context, journal: list[str]) -> None:
    stack.down(ctx)
    assert journal == [
        "stop wave ['demo']", "stop wave ['streaming', 'trino']", "stop wave ['pinot']", "stop wave ['ingest']",
        "stop wave ['connect']", "stop wave ['kafka']", "stop wave ['minio']", "shutdown",
    ]


def test_purge_deletes_every_store_and_keeps_only_the_logs(ctx: Context) -> None:
    state = ctx.state
    stores = [state / "data" / name / "x" for name in ("kafka", "minio", "pinot", "airflow")]
    stores += [state / "checkpoints" / "streaming" / "minute" / "offsets" / "0", state / "alerts" / "state.json",
               state / "conf" / "trino" / "config.properties", state / "prometheus" / "ingest" / "c.db"]
    for path in stores:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (ctx.logs / "kafka.log").write_text("kept")

    deleted = stack.down(ctx, purge=True)

    assert sorted(p.name for p in state.iterdir()) == ["logs"]
    assert {"data", "checkpoints", "alerts", "conf", "prometheus"} <= {p.name for p in deleted}
    assert (ctx.logs / "kafka.log").read_text() == "kept"


def test_purge_also_deletes_checkpoints_kept_outside_the_state_dir(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "elsewhere" / "checkpoints"
    (outside / "minute").mkdir(parents=True)
    monkeypatch.setenv("LAKEPULSE_STREAMING_CHECKPOINT_DIR", str(outside))
    assert outside in stack.state_paths(ctx)
    stack.down(ctx, purge=True)
    assert not outside.exists()


def test_where_to_look_names_the_metrics_api_and_a_demo_token_that_verifies(ctx: Context) -> None:
    from lakepulse.auth.tokens import TokenVerifier

    places = dict(stack.where_to_look(ctx))
    assert f":{ctx.settings.api_port}/docs" in places["metrics API docs"]
    token = places["demo token"]
    principal = TokenVerifier(ctx.settings).verify(token)
    assert principal.tenant_id == "demo-rest-0001"
    assert any(s.name == "api" for _, s in stack.all_services(ctx))


def test_the_metrics_api_workers_share_answers_in_a_private_directory_made_empty_at_each_start(ctx: Context) -> None:
    from lakepulse.platform.components.apps import answers_dir

    services = {s.name: s for _, s in stack.all_services(ctx)}
    api, ingest = services["api"], services["ingest"]
    shared = answers_dir(ctx)
    assert api.env["LAKEPULSE_API_SHARED_ANSWERS_DIR"] == str(shared)
    assert "LAKEPULSE_API_SHARED_ANSWERS_DIR" not in ingest.env
    # The start command's own preparation, on a fresh state directory and again over a previous run's answers.
    prepare = api.command[-1].split(" && exec ")[0]
    for _ in range(2):
        subprocess.run(["/bin/sh", "-c", prepare], check=True)
        assert shared.is_dir() and not any(shared.iterdir()) and stat.S_IMODE(shared.stat().st_mode) == 0o700
        (shared / "left-over").write_bytes(b"a previous run's answer")
