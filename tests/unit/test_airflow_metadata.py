"""Airflow's metadata database in PostgreSQL: the URL every Airflow program gets (local server or cluster setting,
psycopg 3 for sync and async), how it survives supervisord's config, and the API server's program migrating the
schema before it serves."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from supervisor.options import ServerOptions

from lakepulse.platform.components.airflow import Airflow, airflow_env, api_server_command, metadata_location
from lakepulse.platform.components.base import Context
from lakepulse.platform.supervisor import Supervisor
from lakepulse.settings import Settings
from tests.unit.cluster_settings import CLUSTER_KWARGS

# Every character that means something in a URL or to supervisord's %-expansion.
PASSWORD = "p@ss:w/rd%20?#[] é%(x)s"
CONN = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
CONN_ASYNC = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"


def _ctx(tmp_path: Path, **kwargs: object) -> Context:
    settings = Settings(cache_dir=tmp_path / "cache", state_dir=tmp_path / "state", **kwargs)  # type: ignore[arg-type]
    return Context(settings, repo=tmp_path)


def test_locally_airflow_uses_the_stacks_postgres_database_airflow_through_psycopg(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, postgres_user="app@team", postgres_password=PASSWORD, postgres_port=5499)
    env = airflow_env(ctx)
    url = make_url(env[CONN])  # as Airflow's SQLAlchemy reads it before handing it to psycopg
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg", "app@team", PASSWORD, "127.0.0.1", 5499, "airflow")
    # Airflow would derive postgresql+asyncpg (not installed) for its async engine; psycopg 3 does both.
    assert env[CONN_ASYNC] == env[CONN]
    assert not [k for k, v in env.items() if "sqlite" in v.lower()]


def test_in_cluster_mode_airflow_uses_the_airflow_database_url_setting(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, **CLUSTER_KWARGS)
    env = airflow_env(ctx)
    assert env[CONN] == env[CONN_ASYNC] == CLUSTER_KWARGS["airflow_database_url"]
    assert make_url(env[CONN]).host == "db.example.test"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_a_cluster_url_without_the_psycopg_driver_gets_it(tmp_path: Path, scheme: str) -> None:
    ctx = _ctx(tmp_path, **{**CLUSTER_KWARGS, "airflow_database_url": f"{scheme}://af:s3cret@db.test:6543/meta"})
    assert airflow_env(ctx)[CONN] == "postgresql+psycopg://af:s3cret@db.test:6543/meta"


@pytest.mark.parametrize("url", ["sqlite:////var/lib/airflow/airflow.db", "postgresql+psycopg2://af:s3cret@db/m",
                                 "mysql://af:s3cret@db/m", "af:s3cret@db/m"])
def test_other_metadata_databases_are_refused_without_echoing_the_url(url: str) -> None:
    with pytest.raises(ValidationError, match="LAKEPULSE_AIRFLOW_DATABASE_URL must be") as refused:
        Settings(**{**CLUSTER_KWARGS, "airflow_database_url": url})
    assert "s3cret" not in str(refused.value)


def test_the_printable_location_has_no_credentials(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, postgres_user="app@team", postgres_password=PASSWORD, postgres_port=5499)
    assert metadata_location(ctx.settings) == "postgresql://127.0.0.1:5499/airflow"
    cluster = Settings(**{**CLUSTER_KWARGS, "airflow_database_url": "postgresql://af:s3cret@db.test/meta"})
    assert metadata_location(cluster) == "postgresql://db.test:5432/meta"


def test_every_airflow_program_reads_the_exact_url_back_from_supervisords_config(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, postgres_password=PASSWORD)
    services = Airflow().services(ctx)
    options = ServerOptions()  # supervisord's own parser: %-expansion and quoting as it will apply them
    options.configfile = str(Supervisor(ctx).render(services))
    options.process_config(do_usage=False)
    programs = {group.name: group.process_configs[0] for group in options.process_group_configs}
    assert sorted(programs) == sorted(svc.name for svc in services) and len(programs) == 4
    for svc in services:
        assert programs[svc.name].environment[CONN] == ctx.settings.postgres_url("airflow")
        assert shlex.split(programs[svc.name].command) == svc.command


def _fake_airflow(tmp_path: Path, migrate_status: int) -> Path:
    """An `airflow` executable that records its pid and arguments and exits `migrate_status` for `db migrate`."""
    fake = tmp_path / "airflow"
    fake.write_text(f'#!/bin/sh\necho "$$ $*" >> {tmp_path / "calls"}\n'
                    f'[ "$1 $2" = "db migrate" ] && exit {migrate_status}\nexit 0\n')
    fake.chmod(0o755)
    return fake


def test_the_api_server_program_migrates_the_schema_then_becomes_the_server(tmp_path: Path) -> None:
    command = api_server_command(_ctx(tmp_path).settings)
    assert command[:4] == ["/bin/sh", "-c", command[2], "airflow-api"]
    fake = _fake_airflow(tmp_path, migrate_status=0)
    program = subprocess.Popen([*command[:4], str(fake), *command[5:]], env={"PATH": os.environ["PATH"]})
    assert program.wait(timeout=30) == 0
    (migrate_pid, migrate), (server_pid, server) = (
        line.split(" ", 1) for line in (tmp_path / "calls").read_text().splitlines())
    assert (migrate, server) == ("db migrate", "api-server --host 127.0.0.1 --port 8080 --workers 1")
    # The server replaced the shell (exec), so supervisor's signals reach it directly; the migration was a child.
    assert int(server_pid) == program.pid != int(migrate_pid)


def test_the_api_server_does_not_start_when_the_migration_fails(tmp_path: Path) -> None:
    command = api_server_command(_ctx(tmp_path).settings)
    fake = _fake_airflow(tmp_path, migrate_status=3)
    out = subprocess.run([*command[:4], str(fake), *command[5:]], capture_output=True, text=True, timeout=30,
                         env={"PATH": os.environ["PATH"]})
    assert out.returncode == 3
    assert [line.split(" ", 1)[1] for line in (tmp_path / "calls").read_text().splitlines()] == ["db migrate"]
