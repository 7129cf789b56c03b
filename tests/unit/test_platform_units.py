"""Pure pieces of the platform: config rendering, version pins, JDK discovery, settings rules."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

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


def test_postgres_url_percent_encodes_user_and_password() -> None:
    password = "p@ss:w/rd%20?#[] é"
    s = Settings(postgres_user="app@team", postgres_password=password, postgres_port=5499, bind_host="127.0.0.1")
    url = make_url(s.postgres_url("lakepulse"))  # as SQLAlchemy reads it, then hands it to the driver
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg", "app@team", password, "127.0.0.1", 5499, "lakepulse")
    assert s.postgres_url("airflow") == (
        "postgresql+psycopg://app%40team:p%40ss%3Aw%2Frd%2520%3F%23%5B%5D%20%C3%A9@127.0.0.1:5499/airflow")
    plain = Settings(postgres_user="lakepulse", postgres_password="secret", postgres_port=5432, bind_host="127.0.0.1")
    assert plain.postgres_url("lakepulse") == "postgresql+psycopg://lakepulse:secret@127.0.0.1:5432/lakepulse"


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


def test_up_migrates_postgresql_before_the_alert_service_starts(ctx: Context, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """On a fresh state dir the alert service's first read is of the rules table: `up` must have started
    PostgreSQL and run its bootstrap (role, databases, migrations) before the wave that starts `alerts`."""
    import dataclasses

    from lakepulse.platform import stack

    log: list[tuple[str, str]] = []
    started: set[str] = set()
    real = stack.all_services(ctx)

    class Recorder:
        def __init__(self, _ctx: Context) -> None: ...
        def render(self, _services: object) -> None: ...
        def start_daemon(self) -> None: ...
        def state(self, _name: str) -> str:
            return "STOPPED"

        def start(self, name: str) -> None:
            log.append(("start", name))
            started.add(name)

    for comp in stack.components():
        monkeypatch.setattr(type(comp), "prepare", lambda self, _ctx: None)
        monkeypatch.setattr(type(comp), "bootstrap", lambda self, _ctx: log.append(("bootstrap", self.name)))
    monkeypatch.setattr(stack, "provision", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(stack, "Supervisor", Recorder)
    monkeypatch.setattr(stack, "_wait_ready", lambda *_args: None)
    # A service answers once started (nothing really runs here).
    monkeypatch.setattr(stack, "all_services", lambda _ctx: [
        (c, dataclasses.replace(s, ready=lambda name=s.name: name in started)) for c, s in real])

    stack.up(ctx)
    assert ("start", "alerts") in log
    assert log.index(("start", "postgres")) < log.index(("bootstrap", "postgres")) < log.index(("start", "alerts"))
    assert log.index(("bootstrap", "kafka")) < log.index(("start", "alerts"))  # its topics
