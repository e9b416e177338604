"""Schema steps of the service feature area (append-only; see migrations.py).

Import SQLAlchemy inside the step functions, not at module level (read commands import this module)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _s001_alerts_job_runs(conn: Any) -> None:
    from .schema import metadata
    from .schema_service import SERVICE_TABLES

    metadata.create_all(conn, tables=list(SERVICE_TABLES))


STEPS: list[tuple[str, Callable[[Any], None]]] = [
    ("service_001_alerts_job_runs", _s001_alerts_job_runs),
]
