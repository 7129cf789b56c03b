"""What every stack component provides: provisioning, processes to supervise, readiness, bootstrap."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lakepulse.platform.versions import fingerprint
from lakepulse.settings import Settings


@dataclass(frozen=True)
class Context:
    """Settings plus the on-disk layout: software in the cache, data/config/logs in the state dir."""

    settings: Settings
    repo: Path  # the lakepulse checkout (pinot_tables/, trino_catalogs/, dags/ live here)

    @property
    def cache(self) -> Path:
        return self.settings.cache_dir

    @property
    def state(self) -> Path:
        return self.settings.state_dir

    def home(self, component: str) -> Path:
        """Where a component's provisioned software lives."""
        return self.cache / component

    def data(self, component: str) -> Path:
        """A component's data directory (created)."""
        path = self.state / "data" / component
        path.mkdir(parents=True, exist_ok=True)
        return path

    def conf(self, component: str) -> Path:
        """A component's generated configuration directory (created)."""
        path = self.state / "conf" / component
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def logs(self) -> Path:
        path = self.state / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def provision_log(self, component: str) -> Path:
        return self.logs / f"provision-{component}.log"

    # Provisioning is idempotent: a marker holding the pins' fingerprint says a component is complete.
    def is_provisioned(self, component: str, extra: str = "") -> bool:
        marker = self.home(component) / ".provisioned"
        return marker.exists() and marker.read_text().strip() == fingerprint(component, extra)

    def mark_provisioned(self, component: str, extra: str = "") -> None:
        self.home(component).mkdir(parents=True, exist_ok=True)
        (self.home(component) / ".provisioned").write_text(fingerprint(component, extra))

    def reset(self, component: str) -> Path:
        """Empty a component's cache dir before a fresh provision; returns it."""
        home = self.home(component)
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        return home


@dataclass(frozen=True)
class Service:
    """One supervised process: how to start it and how to tell it answers real requests."""

    name: str
    command: list[str]
    ready: Callable[[], bool]
    url: str
    env: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    start_timeout: float = 180.0  # seconds `up` waits for `ready`
    stop_wait: int = 30  # seconds supervisor waits after SIGTERM before SIGKILL
    order: int = 50  # lower starts first


class Component:
    """Base class; subclasses override what applies to them."""

    name: str = ""
    # Services (of any component) that must answer before this component's bootstrap can run; empty means
    # all of its own services.
    bootstrap_needs: tuple[str, ...] = ()

    def provision(self, ctx: Context) -> None:
        """Download/build the software into ctx.home(name), idempotently."""

    def services(self, ctx: Context) -> list[Service]:
        """Write config files and return the processes to supervise (cheap: `status` calls it too)."""
        return []

    def prepare(self, ctx: Context) -> None:
        """One-time work before the first start (format storage, migrate a DB); only `up` calls it."""

    def bootstrap(self, ctx: Context) -> None:
        """Create topics/buckets/tables once the services answer; must be idempotent."""

    def status(self, ctx: Context) -> dict[str, str]:
        """Extra facts for `lakepulse status` (e.g. connector state); empty by default."""
        return {}


def http_ok(url: str, timeout: float = 3.0, **kwargs: object) -> bool:
    """True when `url` answers a GET with a 2xx status."""
    try:
        return httpx.get(url, timeout=timeout, **kwargs).is_success  # type: ignore[arg-type]
    except httpx.HTTPError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    """Poll `check` until it is true; a clear error after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def write_properties(path: Path, props: dict[str, object]) -> Path:
    """Write a Java .properties file (one key=value per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path
