"""The usage store: schema, self-applied migrations, transactional idempotent ingestion, rollups.

``Store`` is imported lazily so that read commands using ``store.db.FastReader`` never import SQLAlchemy."""

from __future__ import annotations

from typing import Any

__all__ = ["Store"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from .repo import Store

        return Store
    raise AttributeError(name)
