"""Running the stack's processes under supervisord (one per state dir), driven over its XML-RPC socket."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from lakepulse.platform.components.base import Context, Service

RUNNING_STATES = {"RUNNING", "STARTING"}


def _escape(value: str) -> str:
    # supervisord expands %(name)s in its config, so a literal % must be doubled.
    return value.replace("%", "%%")


def _environment(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{_escape(v).replace(chr(34), chr(92) + chr(34))}"' for k, v in env.items())


class Supervisor:
    """The supervisord of one state dir: config rendering, start, per-program control, shutdown."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.conf = ctx.conf("supervisor") / "supervisord.conf"
        self.socket = ctx.state / "supervisor.sock"
        self.pidfile = ctx.state / "supervisord.pid"

    def render(self, services: list[Service]) -> Path:
        """Write supervisord.conf with one [program:] per service."""
        logs = self.ctx.logs
        base_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home())}
        parts = [
            f"[unix_http_server]\nfile={self.socket}\nchmod=0700\n",
            f"[supervisord]\nlogfile={logs / 'supervisord.log'}\npidfile={self.pidfile}\n"
            f"directory={self.ctx.state}\nnodaemon=false\nminfds=16384\n",
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
            f"[supervisorctl]\nserverurl=unix://{self.socket}\n",
        ]
        for svc in services:
            command = " ".join(shlex.quote(c) for c in svc.command)
            parts.append(
                f"[program:{svc.name}]\n"
                f"command={_escape(command)}\n"
                f"directory={svc.directory or self.ctx.state}\n"
                f"environment={_environment({**base_env, **svc.env})}\n"
                "autostart=false\nautorestart=true\nstartsecs=3\nstartretries=3\n"
                # Stop the whole process group, so JVM children and uvicorn workers go too.
                f"stopasgroup=true\nkillasgroup=true\nstopwaitsecs={svc.stop_wait}\n"
                f"stdout_logfile={logs / (svc.name + '.log')}\nredirect_stderr=true\n"
                "stdout_logfile_maxbytes=50MB\nstdout_logfile_backups=2\n"
            )
        # Programs' environments hold secrets (the metadata database's password, MinIO's): readable by us only.
        self.conf.touch(mode=0o600)
        self.conf.chmod(0o600)
        self.conf.write_text("\n".join(parts))
        return self.conf

    def rpc(self) -> Any:
        """An XML-RPC proxy to the running supervisord."""
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def is_running(self) -> bool:
        try:
            return self.rpc().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Fault):
            return False

    def start_daemon(self) -> None:
        """Start supervisord for this state dir, or make a running one reread its config."""
        if self.is_running():
            added, changed, removed = self.rpc().supervisor.reloadConfig()[0]
            for name in removed:
                self._stop(name)
                self.rpc().supervisor.removeProcessGroup(name)
            for name in changed:
                # A changed command only takes effect once the program is restarted.
                self._stop(name)
                self.rpc().supervisor.removeProcessGroup(name)
                self.rpc().supervisor.addProcessGroup(name)
            for name in added:
                self.rpc().supervisor.addProcessGroup(name)
            return
        out = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"supervisord refused to start: {out.stdout}{out.stderr}")
        deadline = time.monotonic() + 30
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start; see {self.ctx.logs / 'supervisord.log'}")
            time.sleep(0.2)

    def _stop(self, name: str, wait: bool = True) -> None:
        try:
            self.rpc().supervisor.stopProcess(name, wait)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise

    def stop(self, name: str) -> None:
        """Stop one program (its whole process group); a no-op when it is not running."""
        self._stop(name)

    def start(self, name: str) -> None:
        """Start one program unless it already runs."""
        if self.state(name) not in RUNNING_STATES:
            self.rpc().supervisor.startProcess(name, False)

    def state(self, name: str) -> str:
        try:
            return str(self.rpc().supervisor.getProcessInfo(name)["statename"])
        except (OSError, xmlrpc.client.Fault):
            return "STOPPED"

    def processes(self) -> dict[str, dict[str, Any]]:
        """Supervisor's view of every program, by name (empty when supervisord is not running)."""
        try:
            return {p["name"]: p for p in self.rpc().supervisor.getAllProcessInfo()}
        except (OSError, xmlrpc.client.Fault):
            return {}

    def stop_together(self, names: list[str], timeout: float) -> None:
        """Stop these programs at once (each its whole process group) and wait until none runs (bounded:
        supervisor SIGKILLs a program after its own stopwaitsecs)."""
        running = [n for n in names if self.state(n) in RUNNING_STATES | {"BACKOFF"}]
        for name in running:
            self._stop(name, wait=False)
        deadline = time.monotonic() + timeout
        while any(self.state(n) in RUNNING_STATES | {"STOPPING"} for n in running):
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def shutdown(self, timeout: float = 180) -> None:
        """Stop every program (process groups included), then supervisord itself."""
        if not self.is_running():
            return
        pid = int(self.pidfile.read_text()) if self.pidfile.exists() else None
        self.rpc().supervisor.stopAllProcesses(True)
        self.rpc().supervisor.shutdown()
        deadline = time.monotonic() + timeout
        while pid and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
