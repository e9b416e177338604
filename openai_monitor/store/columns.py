"""Column-name constants shared by the schema and the ingest path, kept free of SQLAlchemy so that an
import into an up-to-date SQLite store never imports it."""

from __future__ import annotations

from ..domain import TOKEN_FIELDS

TOKEN_COLUMNS = TOKEN_FIELDS  # column names equal the UsageRecord token fields

# Narrow rollups: one row per (grain, dim, bucket, provider, key). grain 'h' = UTC hour, 'd' = UTC day.
# dim is one of ROLLUP_DIMS; key is the model / user / project / api key id.
ROLLUP_DIMS = {"model": "model", "user": "user_name", "project": "project", "api_key": "api_key_id"}
ROLLUP_SUMS = (
    "records",
    "requests",
    *TOKEN_COLUMNS,
    "cost_usd",
    "cost_reported_usd",
    "unpriced_records",
)
