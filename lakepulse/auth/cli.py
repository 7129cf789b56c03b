"""`lakepulse token`: mint a local bearer token for the metrics API or, with the producer role, the ingest API."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Final

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from lakepulse.auth.tokens import mint_token
from lakepulse.settings import get_settings

# stdout carries only the token (TOKEN=$(lakepulse token ...)); everything else goes to stderr.
err_console = Console(stderr=True)

_TTL_RE: Final = re.compile(r"([0-9]{1,6})([smhd])")
_TTL_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class RoleChoice(StrEnum):
    tenant = "tenant"
    producer = "producer"
    analyst = "analyst"
    admin = "admin"


def parse_ttl(value: str) -> timedelta:
    """A duration such as 90s, 30m, 12h or 7d as a timedelta; ValueError for anything else."""
    match = _TTL_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"--ttl must be a number and a unit (s, m, h, d), e.g. 30m, 12h or 7d; got {value!r}")
    amount, unit = match.groups()
    return timedelta(**{_TTL_UNITS[unit]: int(amount)})


def token(
    tenant: Annotated[
        list[str] | None,
        typer.Option(
            metavar="TENANT",
            help="The restaurant the token reads (tenant role); repeat it for the tenants a producer writes",
        ),
    ] = None,
    role: Annotated[
        RoleChoice,
        typer.Option(
            help="tenant: reads one restaurant; producer: writes events for its --tenant ones (ingest API); "
            "analyst/admin: every tenant (no --tenant)"
        ),
    ] = RoleChoice.tenant,
    ttl: Annotated[str, typer.Option(help="Lifetime: a number and s, m, h or d (at most 30d)")] = "12h",
    subject: Annotated[str | None, typer.Option(help="The token's sub claim (default local-<tenant or role>)")] = None,
) -> None:
    """Print a local bearer token for the metrics API (or the ingest API), and nothing else on stdout."""
    names = tenant or []
    try:
        if role is RoleChoice.producer:
            minted = mint_token(get_settings(), role=role.value, tenants=names, ttl=parse_ttl(ttl), subject=subject)
        elif len(names) > 1:
            raise ValueError("only a producer token (--role producer) names several tenants; give --tenant once")
        else:
            minted = mint_token(
                get_settings(), tenant=names[0] if names else None, role=role.value, ttl=parse_ttl(ttl), subject=subject
            )
    except ValidationError as exc:  # the settings themselves are refused (e.g. a short secret)
        reasons = "; ".join(str(error["msg"]) for error in exc.errors())
        err_console.print(f"[red]lakepulse token: invalid settings:[/red] {escape(reasons)}")
        raise typer.Exit(2) from exc
    except ValueError as exc:
        err_console.print(f"[red]lakepulse token:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    typer.echo(minted)
