"""Column-name constants shared by the schema and the ingest path, kept free of SQLAlchemy so that an
import into an up-to-date SQLite store never imports it."""

from __future__ import annotations

from ..domain import TOKEN_FIELDS

TOKEN_COLUMNS = TOKEN_FIELDS  # column names equal the UsageRecord token fields

# Narrow rollups: one row per (grain, dim, bucket, provider, key). grain 'h' = UTC hour, 'd' = UTC day.
# dim is one of ROLLUP_DIMS; key is the model / user / project / api key id.
ROLLUP_DIMS = {"model": "model", "user": "user_name", "project": "project", "api_key": "api_key_id"}
# The dims whose rows are kept per provider (a model name alone may not say whose it is); the others are
# summed over providers, provider '' (per-provider figures come from the model rows). Keeping users and
# projects per provider tripled the rollup (1M-row benchmark: 406,548 rows against 135,000) and the
# upserts of every import.
ROLLUP_BY_PROVIDER = frozenset({"model"})
ROLLUP_SUMS = (
    "records",
    "requests",
    *TOKEN_COLUMNS,
    "cost_usd",
    "cost_reported_usd",
    "unpriced_records",
)

# Per provider, the source that reports the whole organisation's usage (its usage API). With the
# "usage-api" precedence (``oaim precedence``) it replaces the provider's per-call records (proxy, SDK,
# CLI logs, CSV) on every UTC day it covers: those stay in the history, flagged ``shadowed``, and leave
# the rollups.
ORG_SOURCES = {"openai": "openai-usage-api", "anthropic": "anthropic-usage-report"}
PRECEDENCE_MODES = ("usage-api", "all")
