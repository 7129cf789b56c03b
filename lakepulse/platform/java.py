"""Finding a JDK new enough for each JVM service (Kafka, Pinot and Spark run on 17; Trino 476 needs 24+)."""

from __future__ import annotations

import os
import re
from pathlib import Path

JVM_ROOTS = [Path("/usr/lib/jvm"), Path("/opt/java"), Path("/usr/local/lib/jvm")]


def java_major(home: Path) -> int | None:
    """Major version of the JDK at `home` (from its `release` file), or None if it is not a JDK."""
    release = home / "release"
    if not (home / "bin" / "java").exists() or not release.exists():
        return None
    match = re.search(r'JAVA_VERSION="(\d+)', release.read_text(errors="replace"))
    return int(match.group(1)) if match else None


def candidate_homes() -> list[Path]:
    """JDK homes on this machine: $JAVA_HOME first, then the usual install roots."""
    homes = [Path(os.environ["JAVA_HOME"])] if os.environ.get("JAVA_HOME") else []
    for root in JVM_ROOTS:
        if root.is_dir():
            homes += sorted(p.resolve() for p in root.iterdir() if p.is_dir())
    seen: list[Path] = []
    for h in homes:
        if h not in seen:
            seen.append(h)
    return seen


def find_java_home(min_major: int, max_major: int | None = None) -> Path:
    """The home of the oldest installed JDK with min_major <= version <= max_major; a clear error if none."""
    found = [(v, h) for h in candidate_homes() if (v := java_major(h)) is not None]
    usable = sorted((v, str(h)) for v, h in found if v >= min_major and (max_major is None or v <= max_major))
    if not usable:
        have = ", ".join(f"{h} (Java {v})" for v, h in found) or "none"
        want = f"Java {min_major}" + (f"–{max_major}" if max_major else "+")
        raise RuntimeError(f"no JDK with {want} found; installed: {have}. Install one, or set JAVA_HOME.")
    return Path(usable[0][1])
