"""Streaming export of raw usage records and daily rollups to CSV, JSON, JSON Lines or Parquet.

Memory stays constant in the number of rows: rows come from the database in chunks (``fetchmany`` on a
stdlib sqlite3 cursor, which steps through the result lazily; a server-side cursor through SQLAlchemy's
``stream_results`` on other databases) and each chunk is written out before the next is read. Records are
read in ``ts, id`` order, which the ``ix_usage_ts`` index serves without a sort.

Formats:

* ``csv``: a header, then one row per record; ``time`` (ISO 8601 UTC) is added next to ``ts``.
* ``json``: one JSON array, written element by element (a valid document at the end, never held in memory).
* ``jsonl``: JSON Lines, one object per line (best for ``jq``, ``duckdb``, appending, or huge files).
* ``parquet``: ``pyarrow.parquet.ParquetWriter`` with one row group per chunk and an explicit schema;
  needs the ``parquet`` extra. Needs ``--output`` (Parquet is a binary, footer-indexed file).

Files are written to ``FILE.part`` and renamed when complete, so a failed export never leaves a truncated
file under the requested name. ``daily`` rows are the UTC-day rollup per dimension (``--by``), the same
buckets the database keeps (``provider`` is set on model rows; user, project and api-key rows are summed
over providers and carry ``provider = ""``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..domain import TOKEN_FIELDS
from ..errors import InputError, MonitorError
from .patterns import bounds_sql

FORMATS = ("csv", "json", "jsonl", "parquet")
WHAT = ("records", "daily")
DAILY_DIMS = ("model", "user", "project", "api_key")
CHUNK_ROWS = 20_000
PARQUET_HINT = "pip install 'openai-usage-monitor[parquet]'"

# (output name, SQL expression, arrow type name)
RECORD_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "id", "int64"),
    ("ts", "ts", "int64"),
    ("bucket_seconds", "bucket_seconds", "int64"),
    ("provider", "provider", "string"),
    ("model", "model", "string"),
    ("user", "user_name", "string"),
    ("project", "project", "string"),
    ("api_key_id", "api_key_id", "string"),
    ("source", "source", "string"),
    ("session_id", "session_id", "string"),
    ("dedup_key", "dedup_key", "string"),
    ("requests", "requests", "int64"),
    *((c, c, "int64") for c in TOKEN_FIELDS),
    ("cost_usd", "cost_usd", "float64"),
    ("cost_reported", "cost_reported", "bool"),
    ("price_version", "price_version", "string"),
    ("service_tier", "service_tier", "string"),
    ("tokens_estimated", "tokens_estimated", "bool"),
    ("imported_at", "imported_at", "int64"),
    # Replaced by the provider's usage API (`oaim precedence`): kept in the history, not counted.
    ("shadowed", "shadowed", "bool"),
)
DAILY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("day_ts", "bucket_ts", "int64"),
    ("dim", "dim", "string"),
    ("provider", "provider", "string"),
    ("key", "key", "string"),
    ("records", "records", "int64"),
    ("requests", "requests", "int64"),
    *((c, c, "int64") for c in TOKEN_FIELDS),
    ("cost_usd", "cost_usd", "float64"),
    ("cost_reported_usd", "cost_reported_usd", "float64"),
    ("unpriced_records", "unpriced_records", "int64"),
)


@dataclass
class ExportResult:
    what: str
    format: str
    rows: int
    bytes: int
    seconds: float
    output: str
    chunks: int
    max_chunk_rows: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "format": self.format,
            "rows": self.rows,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "output": self.output,
        }


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def build_query(
    what: str, since: int | None, until: int | None, by: str = "model"
) -> tuple[str, list[Any], tuple[tuple[str, str, str], ...]]:
    """SQL (``?`` placeholders), parameters and columns of one export."""
    if what not in WHAT:
        raise InputError(f"--what {what!r}: use one of {', '.join(WHAT)}")
    if since is not None and until is not None and until <= since:
        raise InputError("--until must be after --since; check the two dates")
    if what == "records":
        cols, table, tcol, where, params = RECORD_COLUMNS, "usage_records", "ts", "1 = 1", []
        order = "ts, id"
    else:
        if by not in DAILY_DIMS:
            raise InputError(f"--by {by!r}: use one of {', '.join(DAILY_DIMS)}")
        cols, table, tcol, where, params = (
            DAILY_COLUMNS,
            "rollup",
            "bucket_ts",
            "grain = 'd' AND dim = ?",
            [by],
        )
        order = "bucket_ts, provider, key"
    bounds, bound_params = bounds_sql(tcol, since, until)
    where += bounds
    params += bound_params
    select = ", ".join(expr for _n, expr, _t in cols)
    return f"SELECT {select} FROM {table} WHERE {where} ORDER BY {order}", params, cols


def stream_chunks(
    url: str, sql: str, params: list[Any], chunk_rows: int = CHUNK_ROWS
) -> Iterator[list[tuple]]:
    """Rows of ``sql`` in lists of at most ``chunk_rows``, never the whole result at once."""
    from ..store.db import is_sqlite, placeholder_sql, sqlite_path

    if is_sqlite(url):
        import sqlite3

        path = sqlite_path(url)
        if path is None or not path.exists():
            return
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            cur = conn.execute(sql, params)
            while rows := cur.fetchmany(chunk_rows):
                yield rows
        finally:
            conn.close()
        return
    from ..store.db import make_engine

    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            res = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows).exec_driver_sql(
                placeholder_sql(sql, eng.dialect.paramstyle), tuple(params)
            )
            while rows := res.fetchmany(chunk_rows):
                yield [tuple(r) for r in rows]
    finally:
        eng.dispose()


def _row_dicts(
    rows: list[tuple], names: list[str], what: str, bools: bool = True
) -> Iterator[dict[str, Any]]:
    for r in rows:
        d = dict(zip(names, r))
        if what == "records":
            d["time"] = _iso(int(d["ts"]))
            if bools:  # JSON true/false; CSV keeps the stored 0/1
                d["cost_reported"] = bool(d["cost_reported"])
                d["tokens_estimated"] = bool(d["tokens_estimated"])
        else:
            d["day"] = _day(int(d["day_ts"]))
        yield d


def _out_names(cols: tuple[tuple[str, str, str], ...], what: str) -> list[str]:
    names = [n for n, _e, _t in cols]
    extra = "time" if what == "records" else "day"
    pos = names.index("ts" if what == "records" else "day_ts") + 1
    return [*names[:pos], extra, *names[pos:]]


def _write_csv(
    chunks: Iterator[list[tuple]], f: IO[str], names: list[str], out_names: list[str], what: str
) -> None:
    import csv

    w = csv.writer(f, lineterminator="\n")
    w.writerow(out_names)
    # The derived column (ISO time or day) goes right after the first timestamp column, at index 2
    # for records (id, ts) and index 1 for daily rows (day_ts); booleans keep the stored 0/1.
    at, derive = (2, _iso) if what == "records" else (1, _day)
    ts_i = at - 1
    for rows in chunks:
        w.writerows((*r[:at], derive(int(r[ts_i])), *r[at:]) for r in rows)


def _write_json(
    chunks: Iterator[list[tuple]], f: IO[str], names: list[str], out_names: list[str], what: str, lines: bool
) -> None:
    import orjson

    first = True
    if not lines:
        f.write("[")
    for rows in chunks:
        # One write per row into the file's buffer: nothing the size of a chunk is built as text.
        for d in _row_dicts(rows, names, what):
            text = orjson.dumps({k: d[k] for k in out_names}).decode()
            if lines:
                f.write(text + "\n")
            else:
                f.write(("\n" if first else ",\n") + text)
                first = False
    if not lines:
        f.write("\n]\n" if not first else "]\n")


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MonitorError(f"Parquet export needs pyarrow: {PARQUET_HINT}") from exc
    return pa, pq


def _write_parquet(
    chunks: Iterator[list[tuple]], path: Path, cols: tuple[tuple[str, str, str], ...], what: str
) -> None:
    pa, pq = _arrow()
    types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}
    fields = [pa.field(n, types[t]) for n, _e, t in cols]
    if what == "records":
        fields.insert(2, pa.field("time", pa.timestamp("s", tz="UTC")))
    else:
        fields.insert(1, pa.field("day", pa.date32()))
    schema = pa.schema(fields)
    writer = pq.ParquetWriter(str(path), schema, compression="zstd")
    try:
        for rows in chunks:
            columns = list(zip(*rows))
            arrays = []
            for i, (_n, _e, t) in enumerate(cols):
                vals = columns[i]
                if t == "bool":
                    vals = [bool(v) for v in vals]
                arrays.append(pa.array(vals, type=types[t]))
            if what == "records":
                arrays.insert(2, pa.array(columns[1], type=pa.int64()).cast(pa.timestamp("s", tz="UTC")))
            else:
                days = pa.array([v // 86400 for v in columns[0]], type=pa.int32()).cast(pa.date32())
                arrays.insert(1, days)
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=len(rows))
    finally:
        writer.close()


def export(
    url: str,
    *,
    fmt: str,
    what: str = "records",
    output: str | Path | None = None,
    since: int | None = None,
    until: int | None = None,
    by: str = "model",
    chunk_rows: int = CHUNK_ROWS,
    stdout: IO[str] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> ExportResult:
    """Export records or daily rollups in ``[since, until)`` to ``output`` (None: ``stdout``)."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if chunk_rows < 1:
        raise InputError("chunk size must be at least 1 row")
    sql, params, cols = build_query(what, since, until, by)
    if fmt == "parquet":
        if output is None:
            raise InputError("Parquet is a binary file: pass --output FILE.parquet")
        _arrow()
    names = [n for n, _e, _t in cols]
    out_names = _out_names(cols, what)
    stats = {"rows": 0, "chunks": 0, "max": 0}

    def counted() -> Iterator[list[tuple]]:
        for rows in stream_chunks(url, sql, params, chunk_rows):
            stats["rows"] += len(rows)
            stats["chunks"] += 1
            stats["max"] = max(stats["max"], len(rows))
            if on_chunk is not None:
                on_chunk(len(rows))
            yield rows

    t0 = time.perf_counter()
    target = Path(output) if output is not None else None
    if target is not None:
        if target.is_dir():
            raise InputError(f"{target} is a directory: pass a file name to --output")
        if not target.parent.exists():
            raise InputError(f"{target.parent} does not exist: create it or choose another --output")
        part = target.with_name(target.name + ".part")
        try:
            if fmt == "parquet":
                _write_parquet(counted(), part, cols, what)
            else:
                with open(part, "w", encoding="utf-8", newline="") as f:
                    _dispatch(fmt, counted(), f, names, out_names, what)
            os.replace(part, target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        size = target.stat().st_size
        where = str(target)
    else:
        f = stdout or sys.stdout
        _dispatch(fmt, counted(), f, names, out_names, what)
        f.flush()
        size, where = -1, "-"
    return ExportResult(
        what, fmt, stats["rows"], size, time.perf_counter() - t0, where, stats["chunks"], stats["max"]
    )


def _dispatch(
    fmt: str, chunks: Iterator[list[tuple]], f: IO[str], names: list[str], out_names: list[str], what: str
) -> None:
    if fmt == "csv":
        _write_csv(chunks, f, names, out_names, what)
    else:
        _write_json(chunks, f, names, out_names, what, lines=fmt == "jsonl")
