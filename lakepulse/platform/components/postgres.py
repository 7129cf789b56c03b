"""PostgreSQL 15 from Debian's packages: the configuration database (dashboards, widgets, alert rules and their
history) and Airflow's metadata database, each a database of its own on one server.

The cluster lives in the state dir (`data/postgres`, so `down --purge` deletes it with every other store) and
listens on `bind_host:postgres_port`. PostgreSQL refuses to run as root: when the stack runs as root, initdb and
the server run as the OS user `postgres` through `setpriv`, which execs them in place (no watching parent, so
supervisor signals the server itself). The default state dir lies under /root (mode 0700), which that user
cannot enter; then, and only then, the server keeps CAP_DAC_READ_SEARCH so it can walk the path to its data.
That lets it read any file and search any directory, but not write outside its own data (every other service of
the stack runs as root outright).

Two ways in: the application role (`postgres_user` with `postgres_password`, SCRAM over TCP) owns the
databases; the cluster's superuser `postgres` is reached only over the unix socket in the data dir, by peer
authentication mapped from the OS user running the stack, so no administrator password exists anywhere.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from lakepulse.platform.components.base import Component, Context, Service
from lakepulse.settings import Settings

PG_BIN: Final = Path("/usr/lib/postgresql/15/bin")
SERVER_USER: Final = "postgres"  # the OS user the server runs as when the stack runs as root
SUPERUSER: Final = "postgres"  # the cluster's bootstrap superuser, reached only over the unix socket
ADMIN_MAP: Final = "lakepulse_admin"  # pg_ident map: which OS users may connect as SUPERUSER
# The databases the bootstrap creates, owned by the application role: configuration and Airflow's metadata.
DATABASES: Final = ("lakepulse", "airflow")
MAX_CONNECTIONS: Final = 200  # API workers' pools, the alert service and Airflow's components
SOCKET_PATH_MAX: Final = 107  # sockaddr_un.sun_path, less the terminating NUL


def data_dir(ctx: Context) -> Path:
    """The cluster's data directory (created)."""
    return ctx.data("postgres")


def socket_path(data: Path, port: int) -> Path:
    """The server's unix socket, in its data dir (only the server user and root can reach it)."""
    return data / f".s.PGSQL.{port}"


def reachable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether a process of `uid`/`gid` (no supplementary groups) may search every directory above `path`, by
    their mode bits."""
    for parent in path.parents:
        mode = parent.stat()
        if mode.st_uid == uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def privileges(data: Path) -> list[str]:
    """The command prefix that runs a PostgreSQL binary for `data`: nothing when the stack is not root, else
    `setpriv` to the server user (with CAP_DAC_READ_SEARCH only when that user cannot reach `data`)."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:  # not installed: the command still renders (`status` lists it); provision says what is missing
        return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--clear-groups", "--"]
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    if not reachable_by(data, user.pw_uid, user.pw_gid):
        prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return [*prefix, "--"]


# Supervisor stops a program with SIGTERM, which is PostgreSQL's *smart* shutdown: it waits for every client to
# disconnect, and the API's pooled connections never do, so supervisor SIGKILLed it after stop_wait (crash
# recovery at the next start). This shell keeps the server as its child and turns SIGTERM into SIGINT, the fast
# shutdown (sessions are ended, a checkpoint is written). The server's children are in process groups of their
# own, so supervisor's signal to the group reaches only this shell and the postmaster. One line: supervisord's
# config holds the command on one.
FAST_STOP: Final = (
    'trap \'kill -INT "$pid" 2>/dev/null\' TERM INT; "$@" & pid=$!; status=0; '
    'while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done; exit "$status"'
)


def server_command(data: Path, settings: Settings) -> list[str]:
    """The supervised server: listening on bind_host only, its socket in the data dir, logging to stdout, stopped
    fast on SIGTERM."""
    return [
        "/bin/sh", "-c", FAST_STOP, "postgres-supervised",
        *privileges(data), str(PG_BIN / "postgres"), "-D", str(data), "-p", str(settings.postgres_port),
        "-c", f"listen_addresses={settings.bind_host}",
        "-c", f"unix_socket_directories={data}",
        "-c", f"max_connections={MAX_CONNECTIONS}",
        "-c", "logging_collector=off",
        "-c", "password_encryption=scram-sha-256",
    ]


def admin_users() -> list[str]:
    """The OS users pg_ident maps to the superuser: the one running the stack (and `postgres` when that is root)."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    return [me, SERVER_USER] if me == "root" else [me]


def hba_conf() -> str:
    """pg_hba.conf: the superuser over the socket by peer (mapped), every role over TCP by SCRAM password."""
    return (
        "# Written by `lakepulse up` at every start; edits here are overwritten.\n"
        "# TYPE  DATABASE  USER      ADDRESS  METHOD\n"
        f"local   all       {SUPERUSER}            peer map={ADMIN_MAP}\n"
        # Any client address: the server listens on bind_host only, and only password roles can log in.
        "host    all       all       all      scram-sha-256\n"
    )


def ident_conf() -> str:
    """pg_ident.conf: the OS users that may act as the superuser over the socket."""
    lines = "".join(f"{ADMIN_MAP}  {user}  {SUPERUSER}\n" for user in admin_users())
    return "# Written by `lakepulse up` at every start; edits here are overwritten.\n" + lines


def accepting(settings: Settings) -> bool:
    """Whether the server accepts connections (libpq's PQping: no credentials needed)."""
    conninfo = f"host={settings.bind_host} port={settings.postgres_port} connect_timeout=3"
    return psycopg.pq.PGconn.ping(conninfo.encode()) == psycopg.pq.Ping.OK


@contextmanager
def admin_connection(ctx: Context, dbname: str = "postgres") -> Iterator[psycopg.Connection]:
    """An autocommit connection as the cluster's superuser over the unix socket (peer authentication)."""
    conn = psycopg.connect(host=str(data_dir(ctx)), port=ctx.settings.postgres_port, user=SUPERUSER,
                           dbname=dbname, autocommit=True, connect_timeout=5)
    try:
        yield conn
    finally:
        conn.close()


def ensure_role(conn: psycopg.Connection, role: str, password: str) -> None:
    """Create the login role, or set its password (settings may have changed it). The password is sent as its
    SCRAM verifier, computed here by libpq, so the plain text never reaches the server or its logs."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEROLE PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier)))


def ensure_database(conn: psycopg.Connection, name: str, owner: str) -> bool:
    """Create database `name` owned by `owner` unless it exists; True when created."""
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        return False
    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
        sql.Identifier(name), sql.Identifier(owner)))
    # Only the owner (and the superuser) connects: other roles of a shared server see nothing.
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
    return True


def _write_owned(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


class Postgres(Component):
    name = "postgres"

    def provision(self, ctx: Context) -> None:
        missing = [str(p) for p in (PG_BIN / "initdb", PG_BIN / "postgres") if not p.exists()]
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                missing.append(f"the OS user {SERVER_USER}")
        if missing:
            raise RuntimeError(f"PostgreSQL 15 is not installed ({', '.join(missing)} missing): "
                               "apt-get install postgresql-15")

    def prepare(self, ctx: Context) -> None:
        """initdb on a fresh data dir (a warm one is kept), then the authentication files."""
        self.provision(ctx)
        data = data_dir(ctx)
        socket = socket_path(data, ctx.settings.postgres_port)
        if len(str(socket)) > SOCKET_PATH_MAX:
            raise RuntimeError(f"the socket path {socket} is longer than {SOCKET_PATH_MAX} bytes: choose a shorter "
                               "LAKEPULSE_STATE_DIR")
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            if data.stat().st_uid != user.pw_uid:
                os.chown(data, user.pw_uid, user.pw_gid)
        data.chmod(0o700)
        if not (data / "PG_VERSION").exists():
            out = subprocess.run(
                [*privileges(data), str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER,
                 "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
                 "--no-instructions"],
                cwd=data, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            )
            if out.returncode != 0:
                raise RuntimeError(f"initdb failed in {data} (an unfinished earlier attempt leaves files behind: "
                                   f"delete the directory and run again):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        _write_owned(data / "pg_hba.conf", hba_conf())
        _write_owned(data / "pg_ident.conf", ident_conf())

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        data = data_dir(ctx)
        return [Service(
            name="postgres",
            command=server_command(data, s),
            env={"LC_ALL": "C.UTF-8"},
            ready=lambda: accepting(s),
            url=f"postgresql://{s.bind_host}:{s.postgres_port}",
            directory=data,
            start_timeout=60.0,
            # A fast shutdown ends sessions and writes a checkpoint: seconds.
            stop_wait=60,
            # Before Airflow (its metadata database) and the apps (configuration).
            order=5,
        )]

    def bootstrap(self, ctx: Context) -> None:
        """The application role and its databases (idempotent), then the configuration schema's migrations."""
        from lakepulse.config.migrate import upgrade

        s = ctx.settings
        with admin_connection(ctx) as conn:
            ensure_role(conn, s.postgres_user, s.postgres_password.get_secret_value())
            for name in DATABASES:
                ensure_database(conn, name, s.postgres_user)
        upgrade(s.config_database_url)

    def status(self, ctx: Context) -> dict[str, str]:
        from lakepulse.config.migrate import current_revision

        try:
            return {"schema": current_revision(ctx.settings.config_database_url) or "none"}
        except Exception:  # noqa: BLE001 - status is best effort
            return {}
