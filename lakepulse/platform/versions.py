"""The pinned versions of every provisioned server (versions.toml beside this file)."""

from __future__ import annotations

import hashlib
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

VERSIONS_FILE = Path(__file__).with_name("versions.toml")


@lru_cache
def versions() -> dict[str, dict[str, Any]]:
    """All pinned versions, by component."""
    with VERSIONS_FILE.open("rb") as f:
        return tomllib.load(f)


def pin(component: str) -> dict[str, Any]:
    """The pins of one component; a clear error when the component is not in versions.toml."""
    try:
        return versions()[component]
    except KeyError:
        raise KeyError(f"{component!r} has no section in {VERSIONS_FILE}") from None


def fingerprint(component: str, extra: str = "") -> str:
    """A short hash of a component's pins (and any extra input), so a changed pin re-provisions."""
    text = repr(sorted(pin(component).items())) + extra
    return hashlib.sha256(text.encode()).hexdigest()[:12]
