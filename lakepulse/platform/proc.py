"""Running long external commands (mvn, go, tar) with their output in a log and progress on screen."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console

console = Console(stderr=True)


class CommandFailed(RuntimeError):
    """An external command exited non-zero; the message names the command and the log to read."""


def run_logged(
    cmd: Sequence[str | os.PathLike[str]],
    log: Path,
    what: str,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 3600,
) -> None:
    """Run `cmd`, appending its output to `log` and showing its latest line under a spinner."""
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(c) for c in cmd]
    full_env = {**os.environ, **(env or {})}
    started = time.monotonic()
    if not console.is_terminal:  # no spinner in CI logs: say what is starting and where its output goes
        console.print(f"→ {what} (log: {log})")
    with log.open("ab") as out, console.status(f"{what} …") as status:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for raw in proc.stdout:
            out.write(raw)
            line = raw.decode(errors="replace").strip()
            if line:
                elapsed = time.monotonic() - started
                status.update(f"{what} [{elapsed:4.0f}s] [dim]{line[-100:]}[/dim]")
            if time.monotonic() - started > timeout:
                proc.kill()
                raise CommandFailed(f"{what}: timed out after {timeout:.0f}s (log: {log})")
        code = proc.wait()
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise CommandFailed(f"{what} failed (exit {code}); log: {log}\n" + "\n".join(tail))
