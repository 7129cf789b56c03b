"""Configuration in PostgreSQL: dashboards, widgets, alert rules and alert history, per tenant.

The persistence layer: `models` (SQLAlchemy 2) and `migrations` (Alembic) define the schema; `db` opens sessions
from settings; `crud` reads and writes one tenant's rows (every function takes the tenant and filters by it);
`system` holds the cross-tenant reads of the platform's own services (the alert evaluator); `schemas` says what
the rows look like as input and output, checked against the metric catalog. It imports neither the API nor the
alert service: the API checks that it can answer a widget (lakepulse.api.widgets) and reads a dashboard's data
(lakepulse.api.dashboard_data); the alert service reads rules and writes history through this package.
"""
