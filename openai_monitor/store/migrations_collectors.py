"""Schema steps of the collectors feature area (append-only; see migrations.py).

Import SQLAlchemy inside the step functions, not at module level (read commands import this module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _c001_billed_sync_ratelimits(conn: Any) -> None:
    from .schema import metadata
    from .schema_collectors import COLLECTOR_TABLES

    metadata.create_all(conn, tables=list(COLLECTOR_TABLES))


def _c002_source_precedence(conn: Any) -> None:
    """Per-call records can be shadowed by a usage API (``usage_records.shadowed``); the days each usage
    API covers are kept in ``source_coverage``, backfilled from the records already synced."""
    from sqlalchemy import inspect, text

    from .columns import ORG_SOURCES
    from .schema import metadata
    from .schema_collectors import source_coverage

    if "shadowed" not in {c["name"] for c in inspect(conn).get_columns("usage_records")}:
        conn.execute(text("ALTER TABLE usage_records ADD COLUMN shadowed INTEGER DEFAULT 0 NOT NULL"))
    metadata.create_all(conn, tables=[source_coverage])
    for provider, source in ORG_SOURCES.items():
        conn.execute(
            text(
                "INSERT INTO source_coverage (provider, day) SELECT DISTINCT provider, ts - ts % 86400 "
                "FROM usage_records WHERE provider = :p AND source = :s "
                "ON CONFLICT (provider, day) DO NOTHING"
            ),
            {"p": provider, "s": source},
        )


STEPS: list[tuple[str, Callable[[Any], None]]] = [
    ("collectors_001_billed_sync_ratelimits", _c001_billed_sync_ratelimits),
    ("collectors_002_source_precedence", _c002_source_precedence),
]
