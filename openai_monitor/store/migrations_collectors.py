"""Schema steps of the collectors feature area (append-only; see migrations.py).

Import SQLAlchemy inside the step functions, not at module level (read commands import this module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _c001_billed_sync_ratelimits(conn: Any) -> None:
    from .schema import metadata
    from .schema_collectors import COLLECTOR_TABLES

    metadata.create_all(conn, tables=list(COLLECTOR_TABLES))


STEPS: list[tuple[str, Callable[[Any], None]]] = [
    ("collectors_001_billed_sync_ratelimits", _c001_billed_sync_ratelimits),
]
