"""Tables of the service feature area: alerts sent (or held back) and the daemon's job runs.

Timestamps are integer Unix seconds (UTC). APScheduler keeps its own ``apscheduler_jobs`` table (created
by its SQLAlchemyJobStore in the same database); these tables hold what the scheduler does not: the
history and outcome of each run and each alert.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from .schema import metadata

# One row per finding sent. A finding seen again inside its cooldown is not sent: the row's ``repeats``
# and ``last_seen_at`` are bumped instead, so the history shows it without a second notification.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(500), nullable=False),
    Column("kind", String(32), nullable=False),  # anomaly | budget | forecast | collection | stale | test
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False, server_default=""),
    Column("data_json", Text, nullable=False, server_default="{}"),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("repeats", Integer, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),  # sent | partial | failed | no_channel
    Column("channels_json", Text, nullable=False, server_default="{}"),  # channel -> "ok" | error text
)
Index("ix_alerts_key", alerts.c.dedup_key, alerts.c.created_at)

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(32), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("status", String(16), nullable=False, server_default="running"),  # running | ok | failed
    Column("error", Text, nullable=True),
    Column("result_json", Text, nullable=False, server_default="{}"),
)
Index("ix_job_runs_job", job_runs.c.job, job_runs.c.started_at)

SERVICE_TABLES = (alerts, job_runs)
