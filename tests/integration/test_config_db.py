"""The configuration schema on the real PostgreSQL: migrations from an empty database up to head and down to base
(matching the models exactly), the constraints that keep tenants apart, idempotent alert events, and the
`postgres` component itself on a fresh state dir (initdb from nothing) and again on the warm one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg import sql
from sqlalchemy import create_engine, delete, inspect, pool
from sqlalchemy.exc import IntegrityError

from lakepulse.config import crud
from lakepulse.config.db import ConfigDatabase
from lakepulse.config.errors import NotFound
from lakepulse.config.migrate import current_revision, downgrade, head_revision, upgrade
from lakepulse.config.models import Base, Dashboard, Tenant, Widget
from lakepulse.config.schemas import AlertRuleIn, DashboardIn, WidgetIn
from lakepulse.platform.components.base import Context, wait_until
from lakepulse.platform.components.postgres import Postgres, accepting, admin_connection, data_dir
from lakepulse.settings import Settings

pytestmark = pytest.mark.integration

TABLES = {"tenants", "dashboards", "widgets", "alert_rules", "alert_events"}
SERVER_WAIT_S = 60  # bounds, not timing assertions
STOP_WAIT_S = 60


@pytest.fixture
def empty_database(stack: Context) -> Iterator[str]:
    """A throwaway database on the stack's server, owned by the application role; dropped afterwards."""
    name = f"lakepulse_test_{uuid.uuid4().hex[:10]}"
    settings = stack.settings
    with admin_connection(stack) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                    sql.Identifier(settings.postgres_user)))
    try:
        yield settings.postgres_url(name)
    finally:
        with admin_connection(stack) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.needs("postgres")
def test_migrations_run_on_an_empty_database_up_to_the_models_and_down_to_nothing(empty_database: str) -> None:
    url = empty_database
    assert tables(url) == set() and current_revision(url) is None

    upgrade(url)
    assert current_revision(url) == head_revision()
    assert tables(url) == TABLES | {"alembic_version"}
    # The migrations build exactly what the models declare: columns, types, indexes, constraints.
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                           Base.metadata)
    finally:
        engine.dispose()
    assert differences == []

    upgrade(url)  # again: nothing to do
    assert current_revision(url) == head_revision()

    downgrade(url, "base")
    assert tables(url) == {"alembic_version"} and current_revision(url) is None
    upgrade(url)  # and up again from nothing
    assert tables(url) >= TABLES


@pytest.fixture
def db(stack: Context) -> Iterator[ConfigDatabase]:
    database = ConfigDatabase.from_settings(stack.settings, "lakepulse-tests")
    yield database
    database.close()


@pytest.fixture
def new_tenant(db: ConfigDatabase) -> Iterator[Callable[[str], str]]:
    """Unique tenant ids for one test; afterwards they are deleted with all their rows."""
    created: list[str] = []

    def new(prefix: str) -> str:
        created.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return created[-1]

    yield new
    with db.session() as session:
        session.execute(delete(Tenant).where(Tenant.tenant_id.in_(created)))
        session.commit()


def series_widget(**fields: object) -> WidgetIn:
    return WidgetIn.model_validate({"title": "Orders", "kind": "series", "metric": "orders_placed",
                                    "visualisation": "line", **fields})


@pytest.mark.needs("postgres")
def test_the_database_refuses_a_widget_on_another_tenants_dashboard(db: ConfigDatabase,
                                                                    new_tenant: Callable[[str], str]) -> None:
    tenant_a, tenant_b = new_tenant("db-a"), new_tenant("db-b")
    with db.session() as session:
        for tenant in (tenant_a, tenant_b):
            crud.ensure_tenant(session, tenant=tenant, default_name="d", default_widgets=[])
        dashboard = crud.create_dashboard(session, tenant=tenant_a, dashboard=DashboardIn(name="A's"))
        session.commit()
        # Written around crud (which cannot): the composite reference (dashboard_id, tenant_id) refuses it.
        session.add(Widget(id=uuid.uuid4(), dashboard_id=dashboard.id, tenant_id=tenant_b, position=0, title="x",
                           kind="series", metric="orders_placed", visualisation="line"))
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        # Through crud, B does not find A's dashboard at all.
        with pytest.raises(NotFound):
            crud.add_widget(session, tenant=tenant_b, dashboard_id=dashboard.id, widget=series_widget())
        assert dashboard.id not in {d.id for d in crud.list_dashboards(session, tenant=tenant_b)}


@pytest.mark.needs("postgres")
def test_first_use_gives_one_default_dashboard_and_crud_refuses_an_unchecked_tenant(
        db: ConfigDatabase, new_tenant: Callable[[str], str]) -> None:
    tenant = new_tenant("db-first")
    widgets = [series_widget(position=0)]
    with db.session() as session:
        assert crud.ensure_tenant(session, tenant=tenant, default_name="Restaurant", default_widgets=widgets)
        assert not crud.ensure_tenant(session, tenant=tenant, default_name="Restaurant", default_widgets=widgets)
        session.commit()
        (default,) = crud.list_dashboards(session, tenant=tenant)
        assert default.is_default and [w.title for w in default.widgets] == ["Orders"]
        # A second default for the same tenant is refused by the database (partial unique index).
        session.add(Dashboard(id=uuid.uuid4(), tenant_id=tenant, name="again", is_default=True))
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        with pytest.raises(ValueError, match="tenant"):
            crud.list_dashboards(session, tenant="a' OR '1'='1")


@pytest.mark.needs("postgres")
def test_an_alert_event_is_recorded_once_per_key_and_outlives_its_rule(db: ConfigDatabase,
                                                                       new_tenant: Callable[[str], str]) -> None:
    tenant = new_tenant("db-ev")
    window_end = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    with db.session() as session:
        crud.ensure_tenant(session, tenant=tenant, default_name="d", default_widgets=[])
        rule = crud.create_rule(session, tenant=tenant, rule=AlertRuleIn(
            name="busy", metric="orders_placed", condition="gt", threshold=10, window_minutes=5))
        session.commit()
        fire = {"tenant": tenant, "rule_id": rule.id, "value": 12.0, "window_end": window_end,
                "breach_key": f"{rule.id}:{window_end.isoformat()}"}
        assert crud.record_event(session, status="firing", idempotency_key=f"{rule.id}:fire", **fire)
        assert not crud.record_event(session, status="firing", idempotency_key=f"{rule.id}:fire", **fire)
        assert crud.record_event(session, status="resolved", idempotency_key=f"{rule.id}:resolve",
                                 occurred_at=datetime.now(UTC) + timedelta(seconds=1), **fire)
        session.commit()
        events = crud.list_events(session, tenant=tenant)
        assert [e.status for e in events] == ["resolved", "firing"]
        assert len({e.idempotency_key for e in events}) == 2 and len({e.breach_key for e in events}) == 1
        assert events[1].rule_name == "busy" and events[1].threshold == 10 and events[1].value == 12.0

        crud.delete_rule(session, tenant=tenant, rule_id=rule.id)
        session.commit()
        session.expire_all()
        kept = crud.list_events(session, tenant=tenant)
        assert len(kept) == 2 and all(e.rule_id is None and e.rule_name == "busy" for e in kept)

        # The resolve of a breach closed by the rule's deletion: the rule as it fired comes with the event.
        with pytest.raises(NotFound):
            crud.record_event(session, status="resolved", idempotency_key=f"{rule.id}:gone", **fire)
        assert crud.record_event(session, status="resolved", idempotency_key=f"{rule.id}:gone", rule_name="busy",
                                 metric="orders_placed", condition="gt", threshold=10, **fire)
        session.commit()
        assert len(crud.list_events(session, tenant=tenant)) == 3
        # Another tenant cannot record events against this tenant's rules.
        other = new_tenant("db-ev-other")
        crud.ensure_tenant(session, tenant=other, default_name="d", default_widgets=[])
        live_rule = crud.create_rule(session, tenant=tenant, rule=AlertRuleIn(
            name="still here", metric="orders_placed", condition="anomaly"))
        with pytest.raises(NotFound):
            crud.record_event(session, tenant=other, rule_id=live_rule.id, status="firing", value=1.0,
                              window_end=window_end, breach_key="b", idempotency_key=f"{live_rule.id}:x")


# --- the component on a fresh state dir ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(ctx: Context) -> subprocess.Popen[bytes]:
    """The server as supervisor runs it: its command, in its directory, in a process group of its own."""
    (svc,) = Postgres().services(ctx)
    log = open(ctx.logs / "postgres.log", "ab")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(svc.command, cwd=svc.directory, env={**os.environ, **svc.env}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: proc.poll() is None and svc.ready(), SERVER_WAIT_S, "the test's PostgreSQL")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the process group, as supervisor stops a program; the server's exit status."""
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(timeout=STOP_WAIT_S)


def test_the_component_initialises_a_fresh_state_dir_and_restarts_on_the_warm_one(tmp_path: Path) -> None:
    # Under pytest's tmp dir (mode 0700, root's when tests run as root): the server user cannot enter it by its
    # permission bits, which is the default state dir's situation under /root.
    settings = Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", postgres_port=free_port())
    ctx = Context(settings=settings, repo=tmp_path)
    component = Postgres()
    component.prepare(ctx)
    assert (data_dir(ctx) / "PG_VERSION").exists()
    proc = start(ctx)
    try:
        component.bootstrap(ctx)
        component.bootstrap(ctx)  # idempotent
        assert current_revision(settings.config_database_url) == head_revision()
        with admin_connection(ctx) as conn:
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        assert {"lakepulse", "airflow"} <= names
        # The application role logs in over TCP with the password from settings, and only with it.
        with psycopg.connect(host=settings.bind_host, port=settings.postgres_port, user=settings.postgres_user,
                             password=settings.postgres_password.get_secret_value(), dbname="lakepulse") as conn:
            conn.execute("INSERT INTO tenants (tenant_id) VALUES ('kept-across-restarts')")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host=settings.bind_host, port=settings.postgres_port, user=settings.postgres_user,
                            password="wrong", dbname="lakepulse", connect_timeout=5)
        # A client holding a connection does not hold up the stop (fast shutdown, not smart).
        holder = psycopg.connect(settings.config_database_url.replace("postgresql+psycopg", "postgresql"))
        assert stop(proc) == 0
        holder.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not accepting(settings)

    component.prepare(ctx)  # warm: kept as it is
    proc = start(ctx)
    try:
        component.bootstrap(ctx)
        with psycopg.connect(settings.config_database_url.replace("postgresql+psycopg", "postgresql")) as conn:
            assert conn.execute("SELECT count(*) FROM tenants").fetchone() == (1,)
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
