"""Tables of the ML feature area: stored forecasts, their points, anomaly findings, training runs.

Training writes these so that reading commands (``forecast``, ``anomalies``, the monitor) answer from plain
rows without importing Prophet or scikit-learn. Timestamps are integer Unix seconds (UTC); JSON columns are
text. Portable SQL only (SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from .schema import metadata

# One row per fitted series. series_id is "<metric>|<freq>|<scope_dim>|<scope_key>", e.g.
# "cost|d|model|gpt-4o" or "cost|d|all|". summary_json holds the month-end projection and, for daily cost
# series, predictive samples from which any limit's crossing probability and date are computed at read time.
forecasts = Table(
    "forecasts",
    metadata,
    Column("series_id", String(400), primary_key=True),
    Column("scope_dim", String(16), nullable=False),
    Column("scope_key", String(200), nullable=False, server_default=""),
    Column("metric", String(16), nullable=False),
    Column("freq", String(1), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("fallback_reason", Text, nullable=True),
    Column("trained_at", BigInteger, nullable=False),
    Column("data_start", BigInteger, nullable=False),
    Column("data_end", BigInteger, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("data_hash", String(64), nullable=False),
    Column("metrics_json", Text, nullable=False, server_default="{}"),
    Column("artefact", String(1000), nullable=False, server_default=""),
    Column("summary_json", Text, nullable=False, server_default="{}"),
)
Index("ix_forecasts_scope", forecasts.c.metric, forecasts.c.freq, forecasts.c.scope_dim)

forecast_points = Table(
    "forecast_points",
    metadata,
    Column("series_id", String(400), nullable=False),
    Column("ds", BigInteger, nullable=False),  # UTC Unix seconds of the period start
    Column("yhat", Float, nullable=False),
    Column("yhat_lower_80", Float, nullable=False),
    Column("yhat_upper_80", Float, nullable=False),
    Column("yhat_lower_95", Float, nullable=False),
    Column("yhat_upper_95", Float, nullable=False),
    PrimaryKeyConstraint("series_id", "ds"),
)

anomalies = Table(
    "anomalies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(500), nullable=False, unique=True),  # "<scope>|<window start>"
    Column("scope_dim", String(16), nullable=False),
    Column("scope_key", String(200), nullable=False, server_default=""),
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=False),  # exclusive
    Column("severity", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("impact_usd", Float, nullable=False),
    Column("kind", String(32), nullable=False, server_default="unusual"),
    Column("explanation", Text, nullable=False),
    Column("evidence_json", Text, nullable=False, server_default="{}"),
    Column("attribution_json", Text, nullable=False, server_default="[]"),
    Column("detected_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),  # open | acked | expected
    Column("acked_at", BigInteger, nullable=True),
    Column("alerted_at", BigInteger, nullable=True),
)
Index("ix_anomalies_start", anomalies.c.start_ts)

training_runs = Table(
    "training_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("status", String(16), nullable=False, server_default="running"),  # running | ok | partial | failed
    Column("series_total", Integer, nullable=False, server_default="0"),
    Column("fitted", Integer, nullable=False, server_default="0"),
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("failures_json", Text, nullable=False, server_default="[]"),
)

ML_TABLES = (forecasts, forecast_points, anomalies, training_runs)
