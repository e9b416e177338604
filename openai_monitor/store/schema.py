"""SQLAlchemy Core tables of the core store. Timestamps are integer Unix seconds (UTC): smaller and faster
than DateTime columns, and portable. Other features define their tables in their own ``schema_*`` modules
on the same ``metadata``."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from .columns import ROLLUP_DIMS, ROLLUP_SUMS, TOKEN_COLUMNS  # noqa: F401 - re-exported

metadata = MetaData()

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("bucket_seconds", Integer, nullable=False, server_default="0"),
    Column("provider", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("user_name", String(200), nullable=False, server_default=""),
    Column("project", String(200), nullable=False, server_default=""),
    Column("api_key_id", String(200), nullable=False, server_default=""),
    Column("source", String(64), nullable=False, server_default=""),
    Column("session_id", String(200), nullable=False, server_default=""),
    Column("dedup_key", String(400), nullable=False, unique=True),
    Column("requests", BigInteger, nullable=False, server_default="1"),
    *(Column(c, BigInteger, nullable=False, server_default="0") for c in TOKEN_COLUMNS),
    Column("cost_usd", Float, nullable=True),
    Column("cost_reported", Integer, nullable=False, server_default="0"),
    Column("price_version", String(64), nullable=True),
    Column("service_tier", String(32), nullable=False, server_default=""),
    Column("tokens_estimated", Integer, nullable=False, server_default="0"),
    Column("imported_at", BigInteger, nullable=False),
)
Index("ix_usage_ts", usage_records.c.ts)

import_progress = Table(
    "import_progress",
    metadata,
    Column("source", String(64), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("inode", BigInteger, nullable=False, server_default="0"),
    Column("state", Text, nullable=False, server_default=""),
    Column("updated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("source", "path"),
)

meta_kv = Table(
    "meta_kv",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
)

import_runs = Table(
    "import_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("files", Integer, nullable=False, server_default="0"),
    Column("records_read", BigInteger, nullable=False, server_default="0"),
    Column("inserted", BigInteger, nullable=False, server_default="0"),
    Column("duplicates", BigInteger, nullable=False, server_default="0"),
    Column("skipped", BigInteger, nullable=False, server_default="0"),
    Column("status", String(32), nullable=False, server_default="running"),
    Column("message", Text, nullable=False, server_default=""),
)

# Narrow rollups (columns.py): one row per (grain, dim, bucket, provider, key).
rollup = Table(
    "rollup",
    metadata,
    Column("grain", String(1), nullable=False),
    Column("dim", String(16), nullable=False),
    Column("bucket_ts", BigInteger, nullable=False),
    Column("provider", String(32), nullable=False),
    Column("key", String(200), nullable=False),
    Column("records", BigInteger, nullable=False, server_default="0"),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    *(Column(c, BigInteger, nullable=False, server_default="0") for c in TOKEN_COLUMNS),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("cost_reported_usd", Float, nullable=False, server_default="0"),
    Column("unpriced_records", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("grain", "dim", "bucket_ts", "provider", "key"),
)
