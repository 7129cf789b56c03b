"""Pure pieces of the platform: config rendering, version pins, JDK discovery, settings rules."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from lakepulse.platform.components.base import Context, Service
from lakepulse.platform.components.spark import artifact_name
from lakepulse.platform.java import find_java_home, java_major
from lakepulse.platform.maven import Dependency
from lakepulse.platform.supervisor import Supervisor
from lakepulse.platform.versions import fingerprint, pin
from lakepulse.settings import LOCAL_PLACEHOLDER_SECRET, Settings
from tests.unit.cluster_settings import CLUSTER_KWARGS


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return Context(Settings(cache_dir=tmp_path / "cache", state_dir=tmp_path / "state"), repo=tmp_path)


def test_supervisor_config_escapes_percent_and_quotes(ctx: Context) -> None:
    svc = Service(name="demo", command=["/bin/echo", "100%", "two words"], ready=lambda: True,
                  url="http://x", env={"GREETING": 'say "hi" 50%'}, stop_wait=7)
    conf = Supervisor(ctx).render([svc])
    parser = configparser.RawConfigParser()
    parser.read(conf)
    program = parser["program:demo"]
    # supervisord %-expands values, so literal percent signs must arrive doubled.
    assert program["command"] == "/bin/echo 100%% 'two words'"
    assert 'GREETING="say \\"hi\\" 50%%"' in program["environment"]
    assert program["stopasgroup"] == "true" and program["killasgroup"] == "true"
    assert program["stopwaitsecs"] == "7"
    assert program["stdout_logfile"] == str(ctx.logs / "demo.log")
    assert parser["unix_http_server"]["file"] == str(ctx.state / "supervisor.sock")


def test_dependency_xml_carries_type_classifier_and_exclusions() -> None:
    xml = Dependency("io.trino:trino-server-core:476:tar.gz", exclusions=["io.confluent:*"]).xml()
    assert "<groupId>io.trino</groupId>" in xml and "<version>476</version>" in xml
    assert "<type>tar.gz</type>" in xml
    assert "<exclusion><groupId>io.confluent</groupId><artifactId>*</artifactId></exclusion>" in xml
    assert "<classifier>shaded</classifier>" in Dependency("g:a:1:jar:shaded").xml()


def test_fingerprint_changes_with_extra_input_and_is_stable() -> None:
    assert fingerprint("kafka") == fingerprint("kafka")
    assert fingerprint("kafka", "a") != fingerprint("kafka", "b")
    with pytest.raises(KeyError, match="no section"):
        pin("no-such-component")


def test_provisioned_marker_round_trip(ctx: Context) -> None:
    assert not ctx.is_provisioned("kafka")
    ctx.mark_provisioned("kafka", extra="deps-1")
    assert ctx.is_provisioned("kafka", extra="deps-1")
    assert not ctx.is_provisioned("kafka", extra="deps-2")  # a changed dependency list re-provisions


def test_java_major_reads_release_file(tmp_path: Path) -> None:
    home = tmp_path / "jdk-fake"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    (home / "release").write_text('IMPLEMENTOR="x"\nJAVA_VERSION="25.0.1"\n')
    assert java_major(home) == 25
    assert java_major(tmp_path) is None


def test_find_java_home_explains_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lakepulse.platform.java.candidate_homes", lambda: [])
    with pytest.raises(RuntimeError, match="no JDK with Java 99\\+ found"):
        find_java_home(99)


def test_cluster_mode_refuses_placeholder_secret() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        Settings(**{**CLUSTER_KWARGS, "s3_secret_key": LOCAL_PLACEHOLDER_SECRET})
    with pytest.raises(ValueError, match="LAKEPULSE_DATABASE_URL"):
        Settings(**{**CLUSTER_KWARGS, "database_url": None})
    real = Settings(**CLUSTER_KWARGS)
    assert real.mode == "cluster"


def test_settings_port_helpers() -> None:
    s = Settings(s3_endpoint="http://127.0.0.1:9400", trino_url="http://127.0.0.1:8088/")
    assert s.s3_port == 9400
    assert s.port_of(s.trino_url) == 8088


@pytest.mark.parametrize(("jar", "name"), [
    ("jackson-core-2.13.5.jar", "jackson-core"),
    ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
    ("zstd-jni-1.5.7-3.jar", "zstd-jni"),
    ("wildfly-openssl-2.2.5.Final.jar", "wildfly-openssl"),
])
def test_artifact_name_strips_versions(jar: str, name: str) -> None:
    assert artifact_name(Path(jar)) == name


def test_bootstrap_runs_what_its_needed_services_allow(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up --only kafka ...` without Connect: topics are still created (Pinot's tables need them); the
    raw-archive connector, which needs Connect, waits."""
    from lakepulse.platform import stack
    from lakepulse.platform.components.connect_sink import RawSink
    from lakepulse.platform.components.kafka import Kafka
    from lakepulse.platform.components.minio import MinIO
    from lakepulse.platform.components.pinot import Pinot

    ran: list[str] = []
    for cls in (MinIO, Kafka, RawSink, Pinot):
        monkeypatch.setattr(cls, "bootstrap", lambda self, _ctx: ran.append(self.name))
    monkeypatch.setattr(stack, "components", lambda: [MinIO(), Kafka(), RawSink(), Pinot()])

    def service(name: str, ready: bool) -> Service:
        return Service(name=name, command=["true"], ready=lambda: ready, url="")

    pairs = [
        (MinIO(), service("minio", True)),
        (Kafka(), service("kafka", True)),
        (Kafka(), service("connect", False)),
        (Pinot(), service("pinot-zookeeper", True)),
        (Pinot(), service("pinot", True)),
    ]
    stack.bootstrap(ctx, pairs)
    assert ran == ["minio", "kafka", "pinot"]
