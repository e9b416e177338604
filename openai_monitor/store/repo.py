"""The usage repository: takes an engine (or URL), migrates itself on construction, ingests records
transactionally and idempotently, and keeps the rollups in step in the same transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ..domain import FileProgress, UsageRecord
from ..errors import StoreError
from . import db
from . import schema as s
from .migrations import migrate

_RECORD_FIELDS = [f.name for f in fields(UsageRecord)]
# UsageRecord field -> column name (only ``user`` differs: it is reserved in PostgreSQL).
_COLUMN_OF = {"user": "user_name", "cost_reported": "cost_reported", "tokens_estimated": "tokens_estimated"}
_INSERT_COLUMNS = [_COLUMN_OF.get(f, f) for f in _RECORD_FIELDS] + ["imported_at"]
_INSERT_SQL = (
    f"INSERT INTO usage_records ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(_INSERT_COLUMNS))}) "
    "ON CONFLICT (dedup_key) DO NOTHING"
)
_TOKEN_FIELDS = list(s.TOKEN_COLUMNS)
_ROW_OF = attrgetter(*_RECORD_FIELDS)
_BOOL_IDX = [_RECORD_FIELDS.index("cost_reported"), _RECORD_FIELDS.index("tokens_estimated")]

_SUM_EXPR = {
    "records": "COUNT(*)",
    "requests": "SUM(requests)",
    **{c: f"SUM({c})" for c in s.TOKEN_COLUMNS},
    "cost_usd": "SUM(COALESCE(cost_usd, 0))",
    "cost_reported_usd": "SUM(CASE WHEN cost_reported = 1 THEN COALESCE(cost_usd, 0) ELSE 0 END)",
    "unpriced_records": "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)",
}
_GRAINS = {"h": 3600, "d": 86400}


def _rollup_upsert_sql(grain: str, dim: str, where: str, sign: int = 1) -> str:
    width = _GRAINS[grain]
    col = s.ROLLUP_DIMS[dim]
    sums = ", ".join(f"{'-' if sign < 0 else ''}{_SUM_EXPR[c]}" for c in s.ROLLUP_SUMS)
    updates = ", ".join(f"{c} = rollup.{c} + excluded.{c}" for c in s.ROLLUP_SUMS)
    return (
        f"INSERT INTO rollup (grain, dim, bucket_ts, provider, key, {', '.join(s.ROLLUP_SUMS)}) "
        f"SELECT '{grain}', '{dim}', ts - (ts % {width}), provider, {col}, {sums} "
        f"FROM usage_records WHERE {where} GROUP BY ts - (ts % {width}), provider, {col} "
        f"ON CONFLICT (grain, dim, bucket_ts, provider, key) DO UPDATE SET {updates}"
    )


def update_rollups_sql(conn: Connection, where: str, params: dict[str, Any], sign: int = 1) -> None:
    """Add (sign=1) or subtract (sign=-1) the raw rows matching ``where`` to every rollup."""
    for grain in _GRAINS:
        for dim in s.ROLLUP_DIMS:
            conn.execute(text(_rollup_upsert_sql(grain, dim, where, sign)), params)
    if sign < 0:
        conn.execute(text("DELETE FROM rollup WHERE records <= 0"))


_PANDAS_MIN_ROWS = 20_000
_ROW_IDX = {name: i for i, name in enumerate(_RECORD_FIELDS)}


def _update_rollups_from_rows(conn: Connection, rows: list[tuple]) -> None:
    """Rollup delta of a batch known to be entirely new, aggregated with pandas: one vectorised group-by
    per dim at the hour grain (days derived from hours) instead of eight SQL GROUP BY scans."""
    import numpy as np
    import pandas as pd

    def col(name: str) -> list:
        i = _ROW_IDX[name]
        return [r[i] for r in rows]

    cost = np.array(col("cost_usd"), dtype=float)  # None -> nan
    unpriced = np.isnan(cost)
    reported = np.array(col("cost_reported"), dtype=bool) & ~unpriced
    ts = np.array(col("ts"), dtype=np.int64)
    data: dict[str, object] = {
        "bucket": ts - ts % 3600,
        "provider": col("provider"),
        "records": np.ones(len(rows), dtype=np.int64),
        "requests": np.array(col("requests"), dtype=np.int64),
    }
    for c in _TOKEN_FIELDS:
        data[c] = np.array(col(c), dtype=np.int64)
    data["cost_usd"] = np.where(unpriced, 0.0, cost)
    data["cost_reported_usd"] = np.where(reported, cost, 0.0)
    data["unpriced_records"] = unpriced.astype(np.int64)
    df = pd.DataFrame(data)
    sums = list(s.ROLLUP_SUMS)
    updates = ", ".join(f"{c} = rollup.{c} + excluded.{c}" for c in sums)
    sql = (
        f"INSERT INTO rollup (grain, dim, bucket_ts, provider, key, {', '.join(sums)}) "
        f"VALUES ({', '.join('?' * (5 + len(sums)))}) "
        f"ON CONFLICT (grain, dim, bucket_ts, provider, key) DO UPDATE SET {updates}"
    )
    sql = db.placeholder_sql(sql, conn.dialect.paramstyle)
    cur = conn.connection.driver_connection.cursor()
    for dim, column in s.ROLLUP_DIMS.items():
        df["key"] = col("user" if dim == "user" else column)
        hourly = df.groupby(["bucket", "provider", "key"], sort=False)[sums].sum().reset_index()
        daily = hourly.assign(bucket=hourly["bucket"] - hourly["bucket"] % 86400)
        daily = daily.groupby(["bucket", "provider", "key"], sort=False)[sums].sum().reset_index()
        for grain, agg in (("h", hourly), ("d", daily)):
            n = len(agg)
            cols = [[grain] * n, [dim] * n] + [agg[c].tolist() for c in ["bucket", "provider", "key", *sums]]
            cur.executemany(sql, zip(*cols))
    cur.close()


def rebuild_rollups_sql(conn: Connection) -> None:
    conn.execute(text("DELETE FROM rollup"))
    update_rollups_sql(conn, "1 = 1", {})


class Store:
    """Usage store on any SQLAlchemy URL (SQLite file by default). Migrates itself when constructed."""

    def __init__(self, url_or_engine: str | Engine, *, migrate_to: str | None = None):
        if isinstance(url_or_engine, str):
            self.url = url_or_engine
            self.engine = db.make_engine(url_or_engine)
        else:
            self.engine = url_or_engine
            self.url = str(url_or_engine.url)
        try:
            with self.engine.begin() as conn:
                self.applied_now = migrate(conn, upto=migrate_to)
        except OperationalError as e:
            raise StoreError(
                f"cannot open the usage database {self.url}: {e.orig}; check the path and permissions "
                "or pass another --db / OAIM_DATABASE_URL"
            ) from e

    # -- ingestion -------------------------------------------------------------------------------------
    def ingest(
        self,
        records: Iterable[UsageRecord],
        *,
        progress: Sequence[FileProgress] = (),
        replace: bool = False,
        now: int | None = None,
    ) -> tuple[int, int]:
        """Insert records in ONE transaction with their file progress; returns (inserted, duplicates).

        Records whose ``dedup_key`` already exists are skipped, or replace the stored copy when
        ``replace`` is true (sources whose later copy of a record is authoritative: Gemini JSONL, the
        current partial bucket of a usage API). Rollups are updated in the same transaction.
        """
        now = int(time.time()) if now is None else now
        tail = (now,)
        rows = [_ROW_OF(r) + tail for r in records]
        if not db.is_sqlite(self.url):  # sqlite3 stores bools as 0/1 itself; other drivers need ints
            rows = [tuple(int(v) if i in _BOOL_IDX else v for i, v in enumerate(r)) for r in rows]
        seen = len(rows)
        try:
            with self.engine.begin() as conn:
                start_id = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM usage_records")).scalar_one()
                if replace and rows:
                    self._delete_keys(conn, [r[_RECORD_FIELDS.index("dedup_key")] for r in rows])
                    start_id = conn.execute(
                        text("SELECT COALESCE(MAX(id), 0) FROM usage_records")
                    ).scalar_one()
                if rows:
                    raw = conn.connection.driver_connection
                    sql = db.placeholder_sql(_INSERT_SQL, conn.dialect.paramstyle)
                    cur = raw.cursor()
                    cur.executemany(sql, rows)
                    cur.close()
                inserted = conn.execute(
                    text("SELECT COUNT(*) FROM usage_records WHERE id > :start"), {"start": start_id}
                ).scalar_one()
                if inserted and inserted == seen and len(rows) >= _PANDAS_MIN_ROWS:
                    _update_rollups_from_rows(conn, rows)
                elif inserted:
                    update_rollups_sql(conn, "id > :start", {"start": start_id})
                for p in progress:
                    self._save_progress(conn, p, now)
        except SQLAlchemyError as e:
            raise StoreError(f"import rolled back, nothing was written: {e}") from e
        return inserted, seen - inserted

    def _delete_keys(self, conn: Connection, keys: list[str]) -> None:
        conn.execute(text("CREATE TEMPORARY TABLE IF NOT EXISTS _oaim_keys (k VARCHAR(400) PRIMARY KEY)"))
        conn.execute(text("DELETE FROM _oaim_keys"))
        conn.execute(
            text("INSERT INTO _oaim_keys (k) VALUES (:k) ON CONFLICT DO NOTHING"), [{"k": k} for k in keys]
        )
        where = "dedup_key IN (SELECT k FROM _oaim_keys)"
        update_rollups_sql(conn, where, {}, sign=-1)
        conn.execute(text(f"DELETE FROM usage_records WHERE {where}"))
        conn.execute(text("DELETE FROM _oaim_keys"))

    def _save_progress(self, conn: Connection, p: FileProgress, now: int) -> None:
        conn.execute(
            text(
                'INSERT INTO import_progress (source, path, size, mtime_ns, "offset", inode, state, updated_at) '
                "VALUES (:source, :path, :size, :mtime_ns, :offset, :inode, :state, :now) "
                "ON CONFLICT (source, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                '"offset" = excluded."offset", inode = excluded.inode, state = excluded.state, '
                "updated_at = excluded.updated_at"
            ),
            {
                "source": p.source,
                "path": p.path,
                "size": p.size,
                "mtime_ns": p.mtime_ns,
                "offset": p.offset,
                "inode": p.inode,
                "state": p.state,
                "now": now,
            },
        )

    def get_progress(self, source: str) -> dict[str, FileProgress]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    'SELECT source, path, size, mtime_ns, "offset", inode, state FROM import_progress WHERE source = :s'
                ),
                {"s": source},
            ).all()
        return {r[1]: FileProgress(*r) for r in rows}

    # -- pricing ---------------------------------------------------------------------------------------
    def unpriced_models(self) -> list[tuple[str, str, int]]:
        """(provider, model, records) with no cost."""
        with self.engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT provider, model, COUNT(*) FROM usage_records WHERE cost_usd IS NULL "
                        "GROUP BY provider, model ORDER BY 3 DESC"
                    )
                )
            ]

    def reprice(self, pricer: Any, *, only_unpriced: bool = True, batch: int = 50_000) -> int:
        """Compute costs for records not reported by their source (by default only the unpriced ones) with
        ``pricer.cost(record)`` and rebuild the rollups, in one transaction. Returns records priced."""
        cols = ", ".join(["id"] + [_COLUMN_OF.get(f, f) for f in _RECORD_FIELDS])
        where = "cost_reported = 0" + (" AND cost_usd IS NULL" if only_unpriced else "")
        changed = 0
        with self.engine.begin() as conn:
            rows = conn.execute(text(f"SELECT {cols} FROM usage_records WHERE {where}")).all()
            updates = []
            for row in rows:
                rec = UsageRecord(*row[1:])
                cost, version = pricer.cost(rec)
                if cost is not None or not only_unpriced:
                    updates.append({"id": row[0], "c": cost, "v": version})
            for i in range(0, len(updates), batch):
                conn.execute(
                    text("UPDATE usage_records SET cost_usd = :c, price_version = :v WHERE id = :id"),
                    updates[i : i + batch],
                )
            changed = sum(1 for u in updates if u["c"] is not None)
            if updates:
                rebuild_rollups_sql(conn)
        return changed

    # -- bookkeeping -----------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO meta_kv (key, value) VALUES (:k, :v) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ),
                {"k": key, "v": json.dumps(value)},
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.engine.connect() as conn:
            v = conn.execute(text("SELECT value FROM meta_kv WHERE key = :k"), {"k": key}).scalar()
        return default if v is None else json.loads(v)

    def start_run(self, source: str, now: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                text(
                    "INSERT INTO import_runs (source, started_at, status) VALUES (:s, :t, 'running') RETURNING id"
                ),
                {"s": source, "t": now},
            ).scalar_one()

    def finish_run(self, run_id: int, now: int, **counts: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in counts)
        with self.engine.begin() as conn:
            conn.execute(
                text(f"UPDATE import_runs SET finished_at = :t{', ' + sets if sets else ''} WHERE id = :id"),
                {"t": now, "id": run_id, **counts},
            )

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT COUNT(*) FROM usage_records")).scalar_one()

    def reset(self) -> dict[str, int]:
        """Delete all tracking data (records, rollups, import progress and runs). Returns counts removed."""
        removed = {}
        with self.engine.begin() as conn:
            for t in ("usage_records", "rollup", "import_progress", "import_runs"):
                removed[t] = conn.execute(text(f"DELETE FROM {t}")).rowcount
        return removed

    def dispose(self) -> None:
        self.engine.dispose()
