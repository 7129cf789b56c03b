"""The `postgres` component's pure parts (privileges, the command, authentication files, its place in the stack),
and the configuration API's answers that need no database: 401, 403 for roles that may not write, 503 when the
database does not answer (no engine text), and the migration that matches the models."""

from __future__ import annotations

import configparser
import os
import pwd
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lakepulse.api.app import create_app
from lakepulse.auth.tokens import mint_token
from lakepulse.config.migrate import MIGRATIONS, head_revision
from lakepulse.platform import stack
from lakepulse.platform.components.base import Context
from lakepulse.platform.components.postgres import (
    FAST_STOP,
    SERVER_USER,
    Postgres,
    hba_conf,
    ident_conf,
    privileges,
    reachable_by,
    server_command,
)
from lakepulse.platform.supervisor import Supervisor
from lakepulse.settings import Settings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return Context(Settings(cache_dir=tmp_path / "cache", state_dir=tmp_path / "state", postgres_port=5499),
                   repo=tmp_path)


def test_reachability_follows_the_permission_bits_of_every_parent(tmp_path: Path) -> None:
    data = tmp_path / "locked" / "data" / "postgres"
    data.mkdir(parents=True)
    (tmp_path / "locked").chmod(0o700)
    me = os.stat(tmp_path / "locked")
    assert reachable_by(data, me.st_uid, me.st_gid)  # the owner may search its own directories
    assert not reachable_by(data, me.st_uid + 12345, me.st_gid + 12345)  # a stranger may not enter "locked"


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop applies when the stack runs as root")
def test_as_root_the_server_runs_as_the_postgres_user_with_search_rights_only_when_needed(tmp_path: Path) -> None:
    user = pwd.getpwnam(SERVER_USER)
    hidden = tmp_path / "hidden" / "postgres"
    hidden.mkdir(parents=True)
    (tmp_path / "hidden").chmod(0o700)
    prefix = privileges(hidden)
    assert prefix[:4] == ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    assert "--ambient-caps=+dac_read_search" in prefix and prefix[-1] == "--"
    open_dir = Path("/tmp") / f"lakepulse-unit-{os.getpid()}"  # / and /tmp let everyone search them
    open_dir.mkdir(mode=0o755, exist_ok=True)
    try:
        assert not any("caps" in p for p in privileges(open_dir))
    finally:
        open_dir.rmdir()


def test_the_server_listens_on_bind_host_with_its_socket_in_the_data_dir(ctx: Context) -> None:
    data = ctx.data("postgres")
    command = server_command(data, ctx.settings)
    assert command[:5] == ["/bin/sh", "-c", FAST_STOP, "postgres-supervised", *command[4:5]]
    args = command[command.index("-D"):]
    assert args[:4] == ["-D", str(data), "-p", "5499"]
    assert f"listen_addresses={ctx.settings.bind_host}" in args
    assert f"unix_socket_directories={data}" in args


def test_sigterm_to_the_group_becomes_a_fast_shutdown_and_the_status_is_kept(tmp_path: Path) -> None:
    # A stand-in server: records SIGINT (fast shutdown) and exits 0; SIGTERM alone would be a smart shutdown.
    marker = tmp_path / "got"
    server = ("import signal, sys, time, pathlib\n"
              f"p = pathlib.Path({str(marker)!r})\n"
              "signal.signal(signal.SIGTERM, lambda *a: p.write_text('TERM'))\n"
              "signal.signal(signal.SIGINT, lambda *a: (p.write_text(p.read_text() + ' INT' if p.exists() "
              "else 'INT'), sys.exit(0)))\n"
              "print('up', flush=True)\n"
              "while True: time.sleep(0.05)\n")
    proc = subprocess.Popen(["/bin/sh", "-c", FAST_STOP, "postgres-supervised", sys.executable, "-c", server],
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    os.killpg(proc.pid, 15)
    assert proc.wait(timeout=30) == 0
    assert "INT" in marker.read_text()


def test_the_supervisor_program_is_one_line_and_parses(ctx: Context) -> None:
    (svc,) = Postgres().services(ctx)
    conf = Supervisor(ctx).render([svc])
    parser = configparser.RawConfigParser()
    parser.read(conf)
    program = parser["program:postgres"]
    assert shlex.split(program["command"].replace("%%", "%"))[:3] == ["/bin/sh", "-c", FAST_STOP]
    assert program["directory"] == str(ctx.data("postgres"))
    assert svc.order < min(s.order for _, s in stack.all_services(ctx) if s.name.startswith("airflow"))
    assert svc.order < min(s.order for _, s in stack.all_services(ctx) if s.name in ("api", "ingest", "alerts"))


def test_authentication_files_allow_the_superuser_only_by_peer_and_everyone_else_by_password() -> None:
    rules = [line.split() for line in hba_conf().splitlines() if line and not line.startswith("#")]
    assert rules == [["local", "all", "postgres", "peer", "map=lakepulse_admin"],
                     ["host", "all", "all", "all", "scram-sha-256"]]
    mapped = [line.split() for line in ident_conf().splitlines() if line and not line.startswith("#")]
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert ["lakepulse_admin", me, "postgres"] in mapped
    assert all(line[2] == "postgres" for line in mapped)


def test_postgres_is_a_component_of_the_stack_and_purge_deletes_its_data(ctx: Context) -> None:
    assert "postgres" in [c.name for c in stack.components()]
    names = [c.name for c in stack.components()]
    assert names.index("postgres") < names.index("airflow") < names.index("apps")
    ctx.data("postgres")
    assert ctx.state / "data" in stack.state_paths(ctx)  # the cluster lives in the state dir's data


def test_the_migrations_ship_in_the_package_with_one_head() -> None:
    assert (MIGRATIONS / "env.py").exists() and head_revision() == "0001"


# --- the configuration API without its database ------------------------------------------------------------------


@pytest.fixture
def client() -> TestClient:
    # Nothing listens on port 1: every database access fails at once.
    settings = Settings(auth_jwt_secret=SecretStr(SECRET), database_url=SecretStr(
        "postgresql+psycopg://nobody:secret@127.0.0.1:1/lakepulse"), api_rate_limit_per_s=0)
    return TestClient(create_app(settings))


def bearer(client: TestClient, **claims: object) -> dict[str, str]:
    token = mint_token(client.app.state.settings, ttl=timedelta(minutes=5), **claims)  # type: ignore[attr-defined,arg-type]
    return {"Authorization": f"Bearer {token}"}


def test_no_token_is_401_before_the_database_is_asked(client: TestClient) -> None:
    for method, url in (("GET", "/v1/dashboards"), ("POST", "/v1/alerts/rules"), ("GET", "/v1/alerts/history")):
        response = client.request(method, url)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_analysts_and_producers_may_not_change_configuration(client: TestClient) -> None:
    analyst = bearer(client, role="analyst")
    assert client.post("/v1/dashboards", headers=analyst, params={"tenant": "rest-1"},
                       json={"name": "x"}).status_code == 403
    producer = bearer(client, role="producer", tenants=["rest-1"])
    assert client.get("/v1/dashboards", headers=producer).status_code == 403
    tenant = bearer(client, tenant="rest-1")
    assert client.get("/v1/dashboards", headers=tenant, params={"tenant": "rest-2"}).status_code == 403


def test_an_unreachable_database_is_503_with_retry_after_and_no_engine_text(client: TestClient) -> None:
    headers = bearer(client, tenant="rest-1")
    rule = {"name": "x", "metric": "events", "condition": "anomaly"}
    for method, url, body in (("GET", "/v1/dashboards", None), ("POST", "/v1/alerts/rules", rule),
                              ("GET", "/v1/alerts/history", None)):
        response = client.request(method, url, headers=headers, json=body)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
        assert response.json() == {"detail": "the configuration database is not available; retry shortly"}
