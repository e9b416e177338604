"""Tables of the collectors feature area: billed costs from provider cost APIs, where each usage-API sync
should resume, and rate-limit headroom seen by the recording proxy.

Timestamps are integer Unix seconds (UTC). API keys never reach these tables: only provider key ids
(``apikey_...``) or a hash.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from .schema import metadata

# One row per (day, project, line item) of a provider's cost report. A re-synced day replaces all its
# rows (delete then insert in one transaction), so a growing current day is never counted twice.
billed_costs = Table(
    "billed_costs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),
    Column("source", String(64), nullable=False),  # "openai-costs-api" | "anthropic-cost-report"
    Column("day", BigInteger, nullable=False),  # UTC midnight of the bucket
    Column("project", String(200), nullable=False, server_default=""),  # OpenAI project / Anthropic workspace
    Column("line_item", String(400), nullable=False, server_default=""),
    Column("model", String(200), nullable=False, server_default=""),  # "" for non-model line items
    Column("amount", Float, nullable=False),  # in ``currency`` major units (dollars, not cents)
    Column("currency", String(8), nullable=False),
    Column("amount_usd", Float, nullable=True),  # NULL when the currency is not USD
    Column("quantity", Float, nullable=True),
    Column("fetched_at", BigInteger, nullable=False),
)
Index("ix_billed_costs_day", billed_costs.c.provider, billed_costs.c.day)

# Where the next incremental sync of one endpoint starts: the start of the first bucket that was not yet
# complete (its stored copy is replaced when it is fetched again).
sync_state = Table(
    "sync_state",
    metadata,
    Column("provider", String(32), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("bucket_seconds", Integer, nullable=False),
    Column("resume_ts", BigInteger, nullable=False),
    Column("last_sync_at", BigInteger, nullable=False),
    Column("last_status", String(32), nullable=False, server_default="ok"),
    PrimaryKeyConstraint("provider", "endpoint"),
)

# Rate-limit headers seen on proxied responses (x-ratelimit-*, anthropic-ratelimit-*). Reset values are
# normalised to seconds from ``ts``.
ratelimit_snapshots = Table(
    "ratelimit_snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("provider", String(32), nullable=False),
    Column("model", String(200), nullable=False, server_default=""),
    Column("api_key_hash", String(64), nullable=False, server_default=""),
    Column("limit_requests", BigInteger, nullable=True),
    Column("remaining_requests", BigInteger, nullable=True),
    Column("reset_requests_s", Float, nullable=True),
    Column("limit_tokens", BigInteger, nullable=True),
    Column("remaining_tokens", BigInteger, nullable=True),
    Column("reset_tokens_s", Float, nullable=True),
    Column("raw_json", Text, nullable=False, server_default="{}"),
)
Index("ix_ratelimit_ts", ratelimit_snapshots.c.provider, ratelimit_snapshots.c.ts)

# The UTC days on which a provider's usage API reported usage (see columns.ORG_SOURCES): what the
# "usage-api" precedence shadows per-call records on.
source_coverage = Table(
    "source_coverage",
    metadata,
    Column("provider", String(32), nullable=False),
    Column("day", BigInteger, nullable=False),
    PrimaryKeyConstraint("provider", "day"),
)

COLLECTOR_TABLES = (billed_costs, sync_state, ratelimit_snapshots)
