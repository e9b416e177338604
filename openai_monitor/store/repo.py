"""The usage repository: takes an engine (or URL), migrates itself on construction, ingests records
transactionally and idempotently, and keeps the rollups in step in the same transaction."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from ..domain import FIELD_INDEX, RECORD_FIELDS, FileProgress, UsageRecord
from ..errors import InputError, StoreError
from . import columns as s
from . import db

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

_RECORD_FIELDS = list(RECORD_FIELDS)
# UsageRecord field -> column name (only ``user`` differs: it is reserved in PostgreSQL).
_COLUMN_OF = {"user": "user_name", "cost_reported": "cost_reported", "tokens_estimated": "tokens_estimated"}
_INSERT_COLUMNS = [_COLUMN_OF.get(f, f) for f in _RECORD_FIELDS] + ["imported_at"]
# imported_at is one value for a whole batch: written into the statement as an integer literal rather
# than appended to every row tuple (that copy of each row cost ~10% of an ingest).
_INSERT_SQL = (
    f"INSERT INTO usage_records ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_RECORD_FIELDS))}, IMPORTED_AT) ON CONFLICT (dedup_key) DO NOTHING"
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
# The end of every statement that adds rows to the rollup: a row already there gets the sums added.
ROLLUP_ADD = "ON CONFLICT (grain, dim, bucket_ts, provider, key) DO UPDATE SET " + ", ".join(
    f"{c} = rollup.{c} + excluded.{c}" for c in s.ROLLUP_SUMS
)


def _rollup_upsert_sql(grain: str, dim: str, where: str, sign: int = 1, counted_only: bool = True) -> str:
    """Add (or subtract) the raw rows matching WHERE to one rollup; ``counted_only`` leaves out rows
    shadowed by a usage API (False only for steps that run before that column exists)."""
    width = _GRAINS[grain]
    col = s.ROLLUP_DIMS[dim]
    by_provider = dim in s.ROLLUP_BY_PROVIDER
    prov, group = ("provider", f"provider, {col}") if by_provider else ("''", col)
    sums = ", ".join(f"{'-' if sign < 0 else ''}{_SUM_EXPR[c]}" for c in s.ROLLUP_SUMS)
    if counted_only:
        where = f"({where}) AND shadowed = 0"
    return (
        f"INSERT INTO rollup (grain, dim, bucket_ts, provider, key, {', '.join(s.ROLLUP_SUMS)}) "
        f"SELECT '{grain}', '{dim}', ts - (ts % {width}), {prov}, {col}, {sums} "
        f"FROM usage_records WHERE {where} GROUP BY ts - (ts % {width}), {group} {ROLLUP_ADD}"
    )


def update_rollups_sql(
    conn: Connection, where: str, params: dict[str, Any], sign: int = 1, counted_only: bool = True
) -> None:
    """Add (sign=1) or subtract (sign=-1) the raw rows matching ``where`` to every rollup."""
    from sqlalchemy import text

    for grain in _GRAINS:
        for dim in s.ROLLUP_DIMS:
            conn.execute(text(_rollup_upsert_sql(grain, dim, where, sign, counted_only)), params)
    if sign < 0:
        conn.execute(text("DELETE FROM rollup WHERE records <= 0"))


_KEY_IDX = FIELD_INDEX["dedup_key"]
# Row positions of the rollup's group-by columns, in ROLLUP_DIMS order after ts and provider.
_GROUP_IDX = [FIELD_INDEX["ts"], FIELD_INDEX["provider"]] + [
    FIELD_INDEX["user" if col == "user_name" else col] for col in s.ROLLUP_DIMS.values()
]
_COUNT_IDX = [FIELD_INDEX["requests"]] + [FIELD_INDEX[c] for c in _TOKEN_FIELDS]
_COST_IDX = FIELD_INDEX["cost_usd"]
_REPORTED_IDX = FIELD_INDEX["cost_reported"]
_SOURCE_IDX = FIELD_INDEX["source"]
_PROVIDER_IDX = FIELD_INDEX["provider"]
_ORG_PROVIDER_OF = {src: prov for prov, src in s.ORG_SOURCES.items()}
_PRECEDENCE_KEY = "sources.precedence"
# A record lies on a UTC day its provider's usage API covers.
_DAY_COVERED = "(ts - ts % 86400) IN (SELECT day FROM source_coverage WHERE source_coverage.provider = usage_records.provider)"


def _per_call_of(provider: str) -> str:
    """SQL condition: records of PROVIDER that its usage API may replace (provider and source names are
    the constants of ``columns.ORG_SOURCES``, never user input)."""
    return f"provider = '{provider}' AND source <> '{s.ORG_SOURCES[provider]}'"


def _rollups_by_cursor(cur: Any, where: str, sign: int = 1) -> None:
    """``update_rollups_sql`` on a DB-API cursor (WHERE holds no parameters)."""
    for grain in _GRAINS:
        for dim in s.ROLLUP_DIMS:
            cur.execute(_rollup_upsert_sql(grain, dim, where, sign))
    if sign < 0:
        cur.execute("DELETE FROM rollup WHERE records <= 0")


def _shadow_where(cur: Any, where: str) -> None:
    """Take the counted records matching WHERE out of every rollup and flag them shadowed."""
    _rollups_by_cursor(cur, where, -1)
    cur.execute(f"UPDATE usage_records SET shadowed = 1 WHERE shadowed = 0 AND ({where})")


# Below this many new rows a plain dict aggregation beats numpy's fixed per-call cost.
_NUMPY_MIN_ROWS = 2_000


def _rollup_upsert_values_sql(paramstyle: str) -> str:
    sums = list(s.ROLLUP_SUMS)
    sql = (
        f"INSERT INTO rollup (grain, dim, bucket_ts, provider, key, {', '.join(sums)}) "
        f"VALUES ({', '.join('?' * (5 + len(sums)))}) {ROLLUP_ADD}"
    )
    return db.placeholder_sql(sql, paramstyle)


def _hour(ts: int) -> int:
    ts = int(ts)
    return ts - ts % 3600


def _rollup_deltas_py(rows: Sequence[tuple] | None, cols: Sequence[Sequence] | None = None) -> list[tuple]:
    """Rollup rows of a small batch of new records (ROWS, or the same records as columns COLS): the
    records are grouped by the hour bucket of their full (provider, model, user, project, api key)
    combination and each group's columns summed at once, then the four dims and the day grain are derived
    from that far smaller table. (Summing record by record into the groups took 3x as long: 50k Claude
    records, 0.19 s against 0.06 s.)"""
    if cols is None:
        cols = list(zip(*rows)) if rows else []
    if not cols or not cols[0]:
        return []
    groups: dict[tuple, list[int]] = {}
    _, p, m, u, pr, k = _GROUP_IDX
    keys = zip(map(_hour, cols[_GROUP_IDX[0]]), cols[p], cols[m], cols[u], cols[pr], cols[k])
    for i, key in enumerate(keys):
        idx = groups.get(key)
        if idx is None:
            groups[key] = [i]
        else:
            idx.append(i)
    counts = [cols[i] for i in _COUNT_IDX]
    cost_col, reported_col = cols[_COST_IDX], cols[_REPORTED_IDX]
    fine: dict[tuple, list] = {}
    for key, idx in groups.items():
        acc: list = [len(idx)]
        acc.extend(sum(map(col.__getitem__, idx)) for col in counts)
        cost = reported = 0.0
        unpriced = 0
        for i in idx:
            c = cost_col[i]
            if c is None or c != c:  # NaN is stored as NULL by SQLite: unpriced either way
                unpriced += 1
            else:
                cost += c
                if reported_col[i]:
                    reported += c
        acc += (cost, reported, unpriced)
        fine[key] = acc
    out: dict[tuple, list] = {}
    dims = [(dim, dim in s.ROLLUP_BY_PROVIDER) for dim in s.ROLLUP_DIMS]
    for (hour, provider, *vals), acc in fine.items():
        day = hour - hour % 86400
        for (dim, by_provider), val in zip(dims, vals):
            p = provider if by_provider else ""
            for k in (("h", dim, hour, p, val), ("d", dim, day, p, val)):
                tot = out.get(k)
                if tot is None:
                    out[k] = list(acc)
                else:
                    for j, v in enumerate(acc):
                        tot[j] += v
    return [(*k, *v) for k, v in out.items()]


def _codes(values: Sequence[Any]) -> tuple[Any, list]:
    """Integer codes of VALUES (numpy array) and the distinct values, in first-seen order."""
    import numpy as np

    distinct = list(dict.fromkeys(values))
    index = dict(zip(distinct, range(len(distinct))))
    return np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values)), distinct


def _group_sum(bucket: Any, width: int, prov: Any, n_prov: int, val: Any, n_val: int, weights: list) -> tuple:
    """Sum WEIGHTS over equal (bucket, provider code, value code) triples. Returns the distinct
    triples' (bucket, provider code, value code) arrays and one float64 sum array per weight."""
    import numpy as np

    first = int(bucket.min())
    # Bucket index, not epoch seconds, keeps the combined key far inside int64.
    combined = (((bucket - first) // width) * n_prov + prov) * n_val + val
    uniq, inv = np.unique(combined, return_inverse=True)
    m = len(uniq)
    sums = [np.bincount(inv, weights=w, minlength=m) for w in weights]
    rest = uniq // n_val
    return rest // n_prov * width + first, rest % n_prov, uniq % n_val, sums


def _rollup_deltas_np(rows: Sequence[tuple] | None, cols: Sequence[Sequence] | None = None) -> list[tuple]:
    """Rollup rows of a large batch of new records, vectorised: only the needed columns are pulled out,
    string columns coded through a dict, each (hour, provider, key) group summed with ``bincount`` and
    the day grain summed from the hour groups. Sums go through float64: exact for integer sums below
    2**53 per group."""
    import numpy as np

    # One transposition (or the caller's): cheaper than pulling the fifteen columns needed out one at a time.
    if cols is None:
        assert rows is not None
        cols = list(zip(*rows))
    n = len(cols[0])

    def col(i: int) -> tuple:
        return cols[i]

    ts = np.fromiter(cols[0], dtype=np.int64, count=n)
    hour = ts - ts % 3600
    cost = np.array(col(_COST_IDX), dtype=float)  # None -> nan
    unpriced = np.isnan(cost)
    cost = np.where(unpriced, 0.0, cost)
    reported = np.array(col(_REPORTED_IDX), dtype=bool)
    weights = [np.ones(n)] + [np.fromiter(cols[i], dtype=np.float64, count=n) for i in _COUNT_IDX]
    weights += [cost, np.where(reported, cost, 0.0), unpriced.astype(np.float64)]
    float_sums = {s.ROLLUP_SUMS.index("cost_usd"), s.ROLLUP_SUMS.index("cost_reported_usd")}
    by_prov = _codes(col(_GROUP_IDX[1]))
    summed = (np.zeros(n, dtype=np.int64), [""])  # one provider "" for the dims summed over providers
    out: list[tuple] = []
    for dim, col_idx in zip(s.ROLLUP_DIMS, _GROUP_IDX[2:]):
        prov_codes, providers = by_prov if dim in s.ROLLUP_BY_PROVIDER else summed
        n_prov = len(providers)
        val_codes, vals = _codes(col(col_idx))
        n_val = len(vals)
        hourly = _group_sum(hour, 3600, prov_codes, n_prov, val_codes, n_val, weights)
        h_bucket, h_prov, h_val, h_sums = hourly
        daily = _group_sum(h_bucket - h_bucket % 86400, 86400, h_prov, n_prov, h_val, n_val, h_sums)
        for grain, (bucket, prov, val, sums) in (("h", hourly), ("d", daily)):
            m = len(bucket)
            columns = [
                [grain] * m,
                [dim] * m,
                bucket.tolist(),
                [providers[i] for i in prov.tolist()],
                [vals[i] for i in val.tolist()],
            ]
            for j, arr in enumerate(sums):
                columns.append(arr.tolist() if j in float_sums else np.rint(arr).astype(np.int64).tolist())
            out.extend(zip(*columns))
    return out


def _rollup_deltas(rows: Sequence[tuple] | None, cols: Sequence[Sequence] | None = None) -> list[tuple]:
    n = len(rows) if rows is not None else len(cols[0]) if cols else 0
    if n >= _NUMPY_MIN_ROWS:
        return _rollup_deltas_np(rows, cols)
    return _rollup_deltas_py(rows, cols)


def record_rows(records: Iterable[UsageRecord]) -> list[tuple]:
    """Row tuples of records, in the column order ``Store.ingest_rows`` takes."""
    return list(map(_ROW_OF, records))


def rollup_deltas(rows: Sequence[tuple] | None, cols: Sequence[Sequence] | None = None) -> list[tuple]:
    """Rollup upsert rows (grain, dim, bucket, provider, key, sums...) of ROWS, all assumed new
    (``cols``: the same records as columns, ``list(zip(*rows))``, if the caller has them; ROWS may
    then be None)."""
    return _rollup_deltas(rows, cols)


# Fewer rows than this are sent whole: finding their constant columns costs more than binding them.
_CONSTANTS_MIN_ROWS = 256
_INT64 = (-(2**63), 2**63 - 1)


def _literal(v: Any) -> str | None:
    """V as an SQLite literal that stores exactly what binding V would, or None when there is none
    this simple (non-zero floats: SQLite's own decimal parsing might differ from Python's in the last
    bit; strings that are not valid UTF-8 text or hold NUL)."""
    t = type(v)
    if v is None:
        return "NULL"
    if t is bool:
        return "1" if v else "0"
    if t is int:
        return str(v) if _INT64[0] <= v <= _INT64[1] else None
    if t is float:
        return "0.0" if v == 0.0 and str(v) == "0.0" else None
    if t is str:
        if "\x00" in v:
            return None
        try:
            v.encode()
        except UnicodeEncodeError:
            return None
        return "'" + v.replace("'", "''") + "'"
    return None


def split_constants(
    rows: list[tuple] | None, cols: Sequence[Sequence] | None = None
) -> tuple[list[tuple], dict[int, Any]]:
    """ROWS without the columns that hold one value in every row, and those values by column index
    (``{}`` and ROWS unchanged when there are none, or few rows). Such columns go into the INSERT
    statement as literals: binding 9 of 23 parameters fewer per row wrote 1M CSV rows in 5.4-5.7 s
    instead of 6.0-6.3 s, and the rows cross the pipe smaller. Values only need to compare equal:
    numeric columns store 1, 1.0 and True alike, and text columns only ever hold str. ``cols``:
    the same rows as columns (``list(zip(*rows))``) if the caller has them; ROWS may then be None."""
    if cols is None:
        if rows is None or len(rows) < _CONSTANTS_MIN_ROWS:
            return rows or [], {}
        cols = list(zip(*rows))
    n = len(cols[0]) if cols else 0
    if n < _CONSTANTS_MIN_ROWS:
        return (rows if rows is not None else list(zip(*cols))), {}
    consts: dict[int, Any] = {}
    for i, c in enumerate(cols):
        v = c[0]
        # Two probes rule most varying columns out before counting every value.
        if c[-1] == v and c[n // 2] == v and c.count(v) == n and _literal(v) is not None:
            consts[i] = v
    if not consts:
        return (rows if rows is not None else list(zip(*cols))), {}
    return list(zip(*(c for i, c in enumerate(cols) if i not in consts))), consts


def with_constants(rows: list[tuple], consts: dict[int, Any]) -> list[tuple]:
    """The whole rows again from ``split_constants``'s output."""
    if not consts or not rows:
        return rows
    width = len(rows[0]) + len(consts)
    it = iter(zip(*rows))
    cols = [(consts[i],) * len(rows) if i in consts else next(it) for i in range(width)]
    return list(zip(*cols))


_CONST_SQL: dict[tuple, str] = {}


def _insert_with_constants(consts: dict[int, Any]) -> str:
    """The ingest INSERT (qmark style) with CONSTS written in as literals."""
    key = tuple((i, type(v).__name__, v) for i, v in sorted(consts.items()))
    sql = _CONST_SQL.get(key)
    if sql is None:
        values = [_literal(consts[i]) if i in consts else "?" for i in range(len(_RECORD_FIELDS))]
        sql = (
            f"INSERT INTO usage_records ({', '.join(_INSERT_COLUMNS)}) "
            f"VALUES ({', '.join(values)}, IMPORTED_AT) ON CONFLICT (dedup_key) DO NOTHING"
        )
        if len(_CONST_SQL) > 64:
            _CONST_SQL.clear()
        _CONST_SQL[key] = sql
    return sql


def rebuild_rollups_sql(conn: Connection, counted_only: bool = True) -> None:
    from sqlalchemy import text

    conn.execute(text("DELETE FROM rollup"))
    update_rollups_sql(conn, "1 = 1", {}, counted_only=counted_only)


_SQL_CACHE: dict[str, dict[str, str]] = {}


def _sql_for(paramstyle: str) -> dict[str, str]:
    """The ingest statements in the driver's placeholder style (built once per style)."""
    sql = _SQL_CACHE.get(paramstyle)
    if sql is None:
        raw = {
            "max_id": "SELECT COALESCE(MAX(id), 0) FROM usage_records",
            "insert": _INSERT_SQL,
            "count_new": "SELECT COUNT(*) FROM usage_records WHERE id > ?",
            "new_keys": "SELECT dedup_key FROM usage_records WHERE id > ?",
            "temp_key": "INSERT INTO _oaim_keys (k) VALUES (?) ON CONFLICT DO NOTHING",
            "coverage": "INSERT INTO source_coverage (provider, day) VALUES (?, ?) ON CONFLICT (provider, day) DO NOTHING",
            "get_meta": "SELECT value FROM meta_kv WHERE key = ?",
            "set_meta": (
                "INSERT INTO meta_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            "progress": (
                'INSERT INTO import_progress (source, path, size, mtime_ns, "offset", inode, state, updated_at) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                '"offset" = excluded."offset", inode = excluded.inode, state = excluded.state, '
                "updated_at = excluded.updated_at"
            ),
        }
        sql = {k: db.placeholder_sql(v, paramstyle) for k, v in raw.items()}
        sql["rollup"] = _rollup_upsert_values_sql(paramstyle)
        _SQL_CACHE[paramstyle] = sql
    return sql


def _driver_errors(engine: Engine) -> tuple[type[BaseException], ...]:
    """The DB-API driver's own Error class: statements run on the raw cursor raise it unwrapped."""
    err = getattr(engine.dialect.dbapi, "Error", None)
    return (err,) if isinstance(err, type) else ()


# Order matters where tables reference each other (points before their forecast).
RESET_TABLES = (
    "usage_records",
    "rollup",
    "source_coverage",
    "import_progress",
    "import_runs",
    "billed_costs",
    "sync_state",
    "ratelimit_snapshots",
    "forecast_points",
    "forecasts",
    "anomalies",
    "training_runs",
)


class Store:
    """Usage store on any SQLAlchemy URL (SQLite file by default). Migrates itself when constructed.

    An up-to-date SQLite file is written through one stdlib ``sqlite3`` connection and SQLAlchemy is only
    imported when a caller asks for ``engine``: an import of new log lines, the job run most often,
    starts without it (about 0.15 s)."""

    def __init__(self, url_or_engine: str | Engine, *, migrate_to: str | None = None):
        self._engine: Engine | None = None
        self._raw: Any = None
        self.applied_now: list[str] = []
        if not isinstance(url_or_engine, str):
            self._engine = url_or_engine
            self.url = str(url_or_engine.url)
        else:
            self.url = url_or_engine
            path = db.sqlite_path(self.url)
            if migrate_to is None and path is not None:
                from .fast import schema_is_current

                if not path.exists() or (path.is_file() and path.stat().st_size == 0):
                    from .baseline import create_blank

                    self.applied_now = create_blank(self.url) or []

                try:
                    current = schema_is_current(self.url)
                except sqlite3.Error:  # not a database: the engine's attempt below says so
                    current = False
                if current:
                    self._raw = db.connect_sqlite(self.url)
                    # A connection is not shared between threads (the daemon's jobs, the proxy's
                    # recorder): other threads go through the engine's pool.
                    self._raw_thread = threading.get_ident()
                    return
            self._engine = db.make_engine(url_or_engine)
        from sqlalchemy.exc import OperationalError

        from .migrations import migrate

        try:
            with self._engine.begin() as conn:
                self.applied_now = migrate(conn, upto=migrate_to)
        except OperationalError as e:
            raise StoreError(
                f"cannot open the usage database {self.url}: {e.orig}; check the path and permissions "
                "or pass another --db / OAIM_DATABASE_URL"
            ) from e

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use when the store was opened without it)."""
        if self._engine is None:
            self._engine = db.make_engine(self.url)
        return self._engine

    def _own_raw(self) -> Any:
        """The stdlib connection when this thread opened it, else None (use the engine)."""
        if self._raw is not None and threading.get_ident() == self._raw_thread:
            return self._raw
        return None

    def _run(self, sql: str, params: tuple = (), *, write: bool = False) -> list[tuple]:
        """One statement (``?`` placeholders) in its own transaction when ``write``; its rows."""
        if write:
            with self._transaction() as (cur, paramstyle):
                cur.execute(db.placeholder_sql(sql, paramstyle), params)
                return [tuple(r) for r in cur.fetchall()] if cur.description is not None else []
        raw = self._own_raw()
        if raw is not None:
            return raw.execute(sql, params).fetchall()
        with self.engine.connect() as conn:
            res = conn.exec_driver_sql(db.placeholder_sql(sql, conn.dialect.paramstyle), params)
            return [tuple(r) for r in res] if res.returns_rows else []

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
        return self.ingest_rows(list(map(_ROW_OF, records)), progress=progress, replace=replace, now=now)

    def ingest_rows(
        self,
        rows: list[tuple],
        *,
        progress: Sequence[FileProgress] = (),
        replace: bool = False,
        now: int | None = None,
        deltas: list[tuple] | None = None,
        consts: dict[int, Any] | None = None,
    ) -> tuple[int, int]:
        """``ingest`` of records already turned into row tuples (``record_rows``), e.g. by a parsing
        process. ``deltas`` are ``rollup_deltas(rows)`` computed there too: used when every row is new
        (with duplicates the rollups are summed from the rows actually stored, as ``ingest`` does).
        With ``consts``, ROWS and CONSTS are ``split_constants``'s output."""
        return self.ingest_row_batches([(rows, deltas, progress, consts)], replace=replace, now=now)

    def ingest_row_batches(
        self,
        batches: Iterable[
            tuple[list[tuple], list[tuple] | None, Sequence[FileProgress], dict[int, Any] | None]
        ],
        *,
        replace: bool = False,
        now: int | None = None,
    ) -> tuple[int, int]:
        """Several ``ingest_rows`` batches ``(rows, deltas, progress, consts)`` in ONE transaction: the batches a
        parsing process sends are sized for the pipe, while fewer, larger transactions write each page
        of the WAL and checkpoint fewer times (1M CSV rows: commits 1.4 s in batches of 100k, 0.6 s in
        one). ``batches`` may be a generator that receives them meanwhile."""
        now = int(time.time()) if now is None else now
        inserted = seen = 0
        errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        if self._own_raw() is None:
            from sqlalchemy.exc import SQLAlchemyError

            errors = (SQLAlchemyError, *_driver_errors(self.engine))
        sqlite = db.is_sqlite(self.url)
        try:
            with self._transaction() as (cur, paramstyle):
                for rows, deltas, progress, consts in batches:
                    if not sqlite:
                        # Literals are written for SQLite only; other drivers get whole rows, bools as ints.
                        rows = with_constants(rows, consts or {})
                        consts = None
                        rows = [tuple(int(v) if i in _BOOL_IDX else v for i, v in enumerate(r)) for r in rows]
                    inserted += self._write(cur, paramstyle, rows, progress, replace, now, deltas, consts)
                    seen += len(rows)
        except errors as e:
            raise StoreError(f"import rolled back, nothing was written: {e}") from e
        return inserted, seen - inserted

    def _write(
        self,
        cur: Any,
        paramstyle: str,
        rows: list[tuple],
        progress: Sequence[FileProgress],
        replace: bool,
        now: int,
        deltas: list[tuple] | None,
        consts: dict[int, Any] | None = None,
    ) -> int:
        """The statements of one ingest transaction on a DB-API cursor; returns the rows inserted.
        With ``consts`` (SQLite only), ROWS lack those columns: whole rows are rebuilt only for the
        paths that need them (duplicates, replacement, usage-API rows)."""
        sql = _sql_for(paramstyle)

        @cache
        def full() -> list[tuple]:
            return with_constants(rows, consts or {})

        if replace and rows:
            self._delete_keys(cur, sql, [r[_KEY_IDX] for r in full()])
        inserted = 0
        if rows:
            cur.execute(sql["max_id"])
            start_id = cur.fetchone()[0]
            insert = _insert_with_constants(consts) if consts else sql["insert"]
            cur.executemany(insert.replace("IMPORTED_AT", str(int(now))), rows)
            cur.execute(sql["count_new"], (start_id,))
            inserted = cur.fetchone()[0]
        if inserted:
            if inserted == len(rows) and deltas is not None:
                cur.executemany(sql["rollup"], deltas)
            else:
                new = full() if inserted == len(rows) else self._inserted_rows(cur, sql, full(), start_id)
                cur.executemany(sql["rollup"], _rollup_deltas(new))
            source = (consts or {}).get(_SOURCE_IDX)
            self._apply_precedence(cur, sql, full, start_id, source)
        for p in progress:
            cur.execute(
                sql["progress"], (p.source, p.path, p.size, p.mtime_ns, p.offset, p.inode, p.state, now)
            )
        return inserted

    @staticmethod
    def _inserted_rows(cur: Any, sql: dict[str, str], rows: list[tuple], start_id: int) -> list[tuple]:
        """The rows of a batch that were stored (the others' keys existed). Within the batch the first
        copy of a key is the stored one, as ``ON CONFLICT DO NOTHING`` keeps it."""
        cur.execute(sql["new_keys"], (start_id,))
        fresh = {k for (k,) in cur.fetchall()}
        out = []
        for r in rows:
            k = r[_KEY_IDX]
            if k in fresh:
                fresh.discard(k)
                out.append(r)
        return out

    @staticmethod
    def _policy(cur: Any, sql: dict[str, str]) -> dict[str, str]:
        cur.execute(sql["get_meta"], (_PRECEDENCE_KEY,))
        row = cur.fetchone()
        return json.loads(row[0]) if row else {}

    def _apply_precedence(
        self,
        cur: Any,
        sql: dict[str, str],
        full: Callable[[], list[tuple]],
        start_id: int,
        source: str | None = None,
    ) -> None:
        """After new rows (``full()``, SOURCE when all share it) are in: remember the days a usage API
        now covers, and shadow the per-call records that a "usage-api" precedence replaces (new ones
        on covered days; older ones on days covered from now on). Rollups are kept equal to the
        counted records."""
        sources = {source} if source is not None else set(map(itemgetter(_SOURCE_IDX), full()))
        org_days: dict[str, set[int]] = {}
        if not sources.isdisjoint(_ORG_PROVIDER_OF):
            for r in full():
                prov = _ORG_PROVIDER_OF.get(r[_SOURCE_IDX])
                if prov is not None and r[_PROVIDER_IDX] == prov:
                    ts = int(r[0])
                    org_days.setdefault(prov, set()).add(ts - ts % 86400)
            cur.executemany(sql["coverage"], [(p, d) for p, days in org_days.items() for d in sorted(days)])
        policy = self._policy(cur, sql)
        if not any(mode == "usage-api" for mode in policy.values()):
            return
        providers = set(map(itemgetter(_PROVIDER_IDX), full()))
        for prov, mode in policy.items():
            if mode != "usage-api" or prov not in s.ORG_SOURCES:
                continue
            base = f"{_per_call_of(prov)} AND {_DAY_COVERED}"
            if prov in providers and sources - {s.ORG_SOURCES[prov]}:
                _shadow_where(cur, f"id > {int(start_id)} AND {base}")
            days = org_days.get(prov)
            if days:
                _shadow_where(cur, f"ts >= {min(days)} AND ts < {max(days) + 86400} AND {base}")

    @contextmanager
    def _transaction(self) -> Iterator[tuple[Any, str]]:
        """A DB-API cursor inside one transaction, and its driver's placeholder style."""
        raw = self._own_raw()
        if raw is not None:
            cur = raw.cursor()
            try:
                cur.execute("BEGIN")
                try:
                    yield cur, "qmark"
                    cur.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        raw.rollback()
                    raise
            finally:
                cur.close()
            return
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            try:
                yield cur, conn.dialect.paramstyle
            finally:
                cur.close()

    def set_precedence(self, provider: str, mode: str) -> dict[str, Any]:
        """Choose which records count for PROVIDER: "usage-api" (its usage API replaces per-call records on
        the days it covers) or "all" (every source adds up). Re-flags the records and rebuilds the rollups
        in one transaction; returns ``precedence_status()`` of the provider."""
        if provider not in s.ORG_SOURCES:
            raise InputError(
                f"no usage API is synced for {provider!r}; precedence applies to {', '.join(s.ORG_SOURCES)}"
            )
        if mode not in s.PRECEDENCE_MODES:
            raise InputError(f"unknown precedence {mode!r}; use {' or '.join(s.PRECEDENCE_MODES)}")
        with self._transaction() as (cur, paramstyle):
            sql = _sql_for(paramstyle)
            policy = self._policy(cur, sql)
            policy[provider] = mode
            cur.execute(sql["set_meta"], (_PRECEDENCE_KEY, json.dumps(policy, sort_keys=True)))
            cur.execute(
                f"UPDATE usage_records SET shadowed = 0 WHERE shadowed = 1 AND provider = '{provider}'"
            )
            if mode == "usage-api":
                cur.execute(
                    f"UPDATE usage_records SET shadowed = 1 WHERE {_per_call_of(provider)} AND {_DAY_COVERED}"
                )
            cur.execute("DELETE FROM rollup")
            _rollups_by_cursor(cur, "1 = 1")
        return next(st for st in self.precedence_status() if st["provider"] == provider)

    def precedence_status(self) -> list[dict[str, Any]]:
        """Per provider with a usage API: the precedence, the UTC days its usage API covers, the per-call
        records shadowed, and the per-call records still counted on covered days (counted twice)."""
        policy = self.get_meta(_PRECEDENCE_KEY, {})
        out = []
        for prov in s.ORG_SOURCES:
            days, first, last = self._run(
                "SELECT COUNT(*), MIN(day), MAX(day) FROM source_coverage WHERE provider = ?", (prov,)
            )[0]
            shadowed, overlapping = self._run(
                "SELECT COALESCE(SUM(shadowed), 0), COALESCE(SUM(CASE WHEN shadowed = 0 AND "
                f"{_DAY_COVERED} THEN 1 ELSE 0 END), 0) FROM usage_records WHERE {_per_call_of(prov)}"
            )[0]
            out.append(
                {
                    "provider": prov,
                    "usage_api_source": s.ORG_SOURCES[prov],
                    "precedence": policy.get(prov, "all"),
                    "covered_days": int(days),
                    "first_day": first,
                    "last_day": last,
                    "shadowed_records": int(shadowed),
                    "double_counted_records": int(overlapping),
                }
            )
        return out

    @staticmethod
    def _delete_keys(cur: Any, sql: dict[str, str], keys: list[str]) -> None:
        """Remove the stored rows with these keys, and their share of every rollup."""
        cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS _oaim_keys (k VARCHAR(400) PRIMARY KEY)")
        cur.execute("DELETE FROM _oaim_keys")
        cur.executemany(sql["temp_key"], [(k,) for k in keys])
        where = "dedup_key IN (SELECT k FROM _oaim_keys)"
        _rollups_by_cursor(cur, where, -1)
        cur.execute(f"DELETE FROM usage_records WHERE {where}")
        cur.execute("DELETE FROM _oaim_keys")

    def get_progress(self, source: str) -> dict[str, FileProgress]:
        rows = self._run(
            'SELECT source, path, size, mtime_ns, "offset", inode, state FROM import_progress WHERE source = ?',
            (source,),
        )
        return {r[1]: FileProgress(*r) for r in rows}

    # -- pricing ---------------------------------------------------------------------------------------
    def unpriced_models(self) -> list[tuple[str, str, int]]:
        """(provider, model, records) with no cost, from the day rollup (kept in step with every write)."""
        return self._run(
            "SELECT provider, key, SUM(unpriced_records) FROM rollup WHERE grain = 'd' AND dim = 'model' "
            "GROUP BY provider, key HAVING SUM(unpriced_records) > 0 ORDER BY 3 DESC, 2"
        )

    def reprice(self, pricer: Any, *, only_unpriced: bool = True, batch: int = 50_000) -> int:
        """Compute costs for records not reported by their source (by default only the unpriced ones) with
        ``pricer.cost(record)`` and rebuild the rollups, in one transaction. Returns records priced."""
        cols = ", ".join(["id"] + [_COLUMN_OF.get(f, f) for f in _RECORD_FIELDS])
        where = "cost_reported = 0" + (" AND cost_usd IS NULL" if only_unpriced else "")
        changed = 0
        from sqlalchemy import text

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
        self._run(_sql_for("qmark")["set_meta"], (key, json.dumps(value)), write=True)

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._run(_sql_for("qmark")["get_meta"], (key,))
        return default if not rows or rows[0][0] is None else json.loads(rows[0][0])

    def start_run(self, source: str, now: int) -> int:
        return self._run(
            "INSERT INTO import_runs (source, started_at, status) VALUES (?, ?, 'running') RETURNING id",
            (source, now),
            write=True,
        )[0][0]

    def finish_run(self, run_id: int, now: int, **counts: Any) -> None:
        sets = "".join(f", {k} = ?" for k in counts)
        self._run(
            f"UPDATE import_runs SET finished_at = ?{sets} WHERE id = ?",
            (now, *counts.values(), run_id),
            write=True,
        )

    def count(self) -> int:
        return self._run("SELECT COUNT(*) FROM usage_records")[0][0]

    def reset(self) -> dict[str, int]:
        """Delete all tracking data: usage records, rollups, import progress and runs, and what was derived
        from or synced with them (billed costs, sync state, rate-limit snapshots, stored forecasts,
        anomaly findings, training runs). Budgets, alerts history and the config stay. Returns counts."""
        from sqlalchemy import inspect, text

        removed = {}
        with self.engine.begin() as conn:
            present = set(inspect(conn).get_table_names())
            for t in RESET_TABLES:
                if t in present:
                    removed[t] = conn.execute(text(f"DELETE FROM {t}")).rowcount
            conn.execute(
                text("DELETE FROM meta_kv WHERE key IN ('last_collection_at', 'ml.last_detected_ts')")
            )
        return removed

    def dispose(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._engine is not None:
            self._engine.dispose()
