"""Fetching jars and archives from Maven Central with Maven itself, checksums enforced.

Maven verifies every download against its published checksum (`--strict-checksums`) and keeps a
local repository, so a rerun after an interruption resumes where it stopped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from lakepulse.platform.proc import run_logged

MVN_FLAGS = ["-B", "-Dstyle.color=never", "--strict-checksums", "-Dmaven.artifact.threads=8"]
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


@dataclass(frozen=True)
class Dependency:
    """One Maven dependency (`group:artifact:version[:type[:classifier]]`) and what to leave out of it."""

    coords: str
    exclusions: Sequence[str] = field(default_factory=tuple)  # "group:artifact", "*" allowed

    def xml(self) -> str:
        """The <dependency> element for a throwaway POM."""
        parts = self.coords.split(":")
        group, artifact, version = parts[0], parts[1], parts[2]
        kind = f"<type>{parts[3]}</type>" if len(parts) > 3 else ""
        classifier = f"<classifier>{parts[4]}</classifier>" if len(parts) > 4 else ""
        excl = "".join(
            f"<exclusion><groupId>{escape(g)}</groupId><artifactId>{escape(a)}</artifactId></exclusion>"
            for g, a in (e.split(":") for e in self.exclusions)
        )
        return (
            f"<dependency><groupId>{escape(group)}</groupId><artifactId>{escape(artifact)}</artifactId>"
            f"<version>{escape(version)}</version>{kind}{classifier}"
            f"<exclusions>{excl}</exclusions></dependency>"
        )


def require_maven() -> str:
    """Path of `mvn`, or a clear error saying how to get it."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise RuntimeError("Maven (mvn) is needed to provision the JVM services: apt-get install maven")
    return mvn


def copy_dependencies(name: str, deps: Iterable[Dependency], dest: Path, work: Path, log: Path) -> None:
    """Resolve `deps` with their runtime closure and copy every jar into `dest` (flat)."""
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        f"<groupId>lakepulse.provision</groupId><artifactId>{escape(name)}</artifactId><version>0</version>"
        "<packaging>pom</packaging><dependencies>" + "".join(d.xml() for d in deps) + "</dependencies></project>"
    )
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    run_logged(
        [require_maven(), *MVN_FLAGS, "-f", pom, f"{DEPENDENCY_PLUGIN}:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
        log, f"fetching {name} jars",
    )
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def copy_artifact(coords: str, dest_dir: Path, log: Path) -> Path:
    """Fetch one artifact (e.g. a tar.gz or zip) without its dependencies; returns the file path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    run_logged(
        [require_maven(), *MVN_FLAGS, f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={coords}",
         f"-DoutputDirectory={dest_dir}", "-Dmdep.overWriteReleases=false"],
        log, f"fetching {coords}",
    )
    parts = coords.split(":")
    ext = parts[3] if len(parts) > 3 else "jar"
    classifier = f"-{parts[4]}" if len(parts) > 4 else ""
    return dest_dir / f"{parts[1]}-{parts[2]}{classifier}.{ext}"
