"""Named, append-only schema steps applied automatically (llm-style). Never edit a released step: add one.

Each feature area owns one module listed in ``STEP_MODULES`` exposing ``STEPS: list[tuple[str, fn]]``;
``fn(conn)`` receives a SQLAlchemy Connection inside the migration transaction. Steps run in list order,
each once, recorded in ``_migrations``. Alembic was not used: its import cost and revision machinery buy
nothing for a local single-file store whose steps are all additive.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection

# Kept free of module-level SQLAlchemy imports: read commands list step names without paying for it.
Step = tuple[str, Callable[[Any], None]]


def _m001_initial(conn: Connection) -> None:
    from . import schema as s

    s.metadata.create_all(conn, tables=[s.usage_records, s.import_progress, s.meta_kv, s.import_runs])


def _m002_rollups(conn: Connection) -> None:
    from . import schema as s
    from .repo import rebuild_rollups_sql

    s.metadata.create_all(conn, tables=[s.rollup])
    rebuild_rollups_sql(conn, counted_only=False)  # `shadowed` comes with a later step


def _m003_rollup_provider_on_model_rows_only(conn: Connection) -> None:
    """User, project and api-key rollup rows are summed over providers (provider '', see
    ``columns.ROLLUP_BY_PROVIDER``): existing per-provider rows are folded into one row per key."""
    from sqlalchemy import text

    from . import columns as s
    from .repo import ROLLUP_ADD

    keep = ", ".join(f"'{d}'" for d in sorted(s.ROLLUP_BY_PROVIDER))
    sums = ", ".join(s.ROLLUP_SUMS)
    conn.execute(
        text(
            f"INSERT INTO rollup (grain, dim, bucket_ts, provider, key, {sums}) "
            f"SELECT grain, dim, bucket_ts, '', key, {', '.join(f'SUM({c})' for c in s.ROLLUP_SUMS)} "
            f"FROM rollup WHERE dim NOT IN ({keep}) AND provider <> '' GROUP BY grain, dim, bucket_ts, key "
            + ROLLUP_ADD
        )
    )
    conn.execute(text(f"DELETE FROM rollup WHERE dim NOT IN ({keep}) AND provider <> ''"))


CORE_STEPS: list[Step] = [
    ("m001_initial", _m001_initial),
    ("m002_rollups", _m002_rollups),
    ("m003_rollup_provider_on_model_rows_only", _m003_rollup_provider_on_model_rows_only),
]

# Feature areas append their steps in their own module; order here is the order steps are applied.
STEP_MODULES = (
    "openai_monitor.store.migrations_ml",
    "openai_monitor.store.migrations_monitor",
    "openai_monitor.store.migrations_service",
    "openai_monitor.store.migrations_collectors",
)


def all_steps() -> list[Step]:
    steps = list(CORE_STEPS)
    for mod in STEP_MODULES:
        steps.extend(importlib.import_module(mod).STEPS)
    return steps


def step_names() -> list[str]:
    return [name for name, _ in all_steps()]


def applied(conn: Connection) -> set[str]:
    from sqlalchemy import text

    conn.execute(
        text("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR(200) PRIMARY KEY, applied_at BIGINT)")
    )
    return {r[0] for r in conn.execute(text("SELECT name FROM _migrations"))}


def migrate(conn: Connection, upto: str | None = None) -> list[str]:
    """Apply pending steps (up to and including ``upto`` if given). Returns the names applied."""
    from sqlalchemy import text

    done = applied(conn)
    ran: list[str] = []
    for name, fn in all_steps():
        if name not in done:
            fn(conn)
            conn.execute(
                text("INSERT INTO _migrations (name, applied_at) VALUES (:n, :t)"),
                {"n": name, "t": int(time.time())},
            )
            ran.append(name)
        if name == upto:
            break
    return ran
