"""The `lakepulse` command: run the local stack and work with it."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Annotated

import typer
from rich.console import Console

from lakepulse import archive
from lakepulse.auth.cli import token
from lakepulse.batch_cli import backfill
from lakepulse.generator.cli import generate
from lakepulse.platform import stack

app = typer.Typer(help="lakepulse: real-time analytics on Kafka, Spark, Delta, Pinot, Trino and Airflow.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
# Wide enough for the status table when output goes to a file or CI log.
console = Console(width=None if sys.stdout.isatty() else 160)

app.command(help="Generate realistic marketplace traffic to the API, Kafka or an NDJSON file.")(generate)
app.add_typer(archive.app, name="archive")
app.command(help="Rebuild a past range of history through Airflow's backfill DAG and follow it.")(backfill)
app.command(help="Print a local bearer token for the metrics or ingest API (only the token: "
                 "TOKEN=$(lakepulse token ..)).")(token)

OnlyOption = Annotated[
    list[str] | None,
    typer.Option("--only", help="Only these services (repeatable), e.g. --only kafka --only minio."),
]


@app.command()
def provision(only: Annotated[list[str] | None, typer.Option(help="Only these components.")] = None) -> None:
    """Download and build every server into the cache (idempotent; `up` does this first)."""
    started = time.monotonic()
    stack.provision(stack.context(), only)
    console.print(f"provisioned in {time.monotonic() - started:.0f}s into {stack.context().cache}")


@app.command()
def up(
    only: OnlyOption = None,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="Start all services but these.")] = None,
    demo: Annotated[bool, typer.Option(help="Send demo traffic (--no-demo also stops it if it runs).")] = True,
) -> None:
    """Provision, start and bootstrap the stack; returns once every service answers a real request."""
    started = time.monotonic()
    ctx = stack.context()
    try:
        stack.up(ctx, only, skip, demo)
    except (stack.ServiceFailed, TimeoutError, RuntimeError, ValueError) as exc:
        console.print(f"[red]lakepulse up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(stack.status_table(stack.status(ctx)))
    console.print(f"up in {time.monotonic() - started:.0f}s; logs in {ctx.logs}\n")
    console.print("[bold]Where to look[/bold]")
    for what, where in stack.where_to_look(ctx):
        # soft_wrap: a token must stay one line to be copied whole.
        console.print(f"  {what:16} {where}", soft_wrap=True)


PurgeOption = Annotated[bool, typer.Option(
    help="Also delete all state: topics, objects, tables, segments, Airflow runs, checkpoints, alert state.")]


@app.command()
def down(purge: PurgeOption = False) -> None:
    """Stop every process of the stack (and, with --purge, delete its state; the logs are kept)."""
    stack.down(stack.context(), purge)


@app.command()
def status() -> None:
    """Each service: state, readiness (a real request), URL and details. Exit 1 if any is not ready."""
    rows = stack.status(stack.context())
    console.print(stack.status_table(rows))
    if not all(r.ready for r in rows):
        raise typer.Exit(1)


@app.command()
def logs(
    service: str,
    lines: Annotated[int, typer.Option("-n", "--lines")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
) -> None:
    """Show (or follow) a service's log."""
    log = stack.context().logs / f"{service}.log"
    if not log.exists():
        known = sorted(p.stem for p in log.parent.glob("*.log"))
        console.print(f"[red]no log for {service!r}[/red]; known: {', '.join(known)}")
        raise typer.Exit(1)
    sys.exit(subprocess.call(["tail", f"-n{lines}", *(["-F"] if follow else []), str(log)]))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
