"""The usage store: schema, self-applied migrations, transactional idempotent ingestion, rollups."""

from .repo import Store

__all__ = ["Store"]
