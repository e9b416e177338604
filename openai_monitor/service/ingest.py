"""Run a source adapter into the store: per-file incremental progress, pricing, transactional batches.

Each batch (up to 500 small files, or 100k records) is one transaction together with its files' progress,
so a crash leaves the database as it was before that batch, and re-running adds nothing twice (records
carry stable de-duplication keys). Batches from a parsing process (small, to keep both processes busy)
are joined into transactions of up to GROUP_ROWS records, with the same guarantee per transaction."""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from ..domain import (
    COLUMNS_OPTION,
    FIELD_INDEX,
    RECORD_FIELDS,
    FileProgress,
    ParseReport,
    RecordColumns,
    UsageRecord,
)
from ..errors import InputError

BATCH_RECORDS = 100_000
# Files whose progress may share one transaction (with at most BATCH_RECORDS records in all).
BATCH_FILES = 500
# Rows a parsing process sends that are written in one transaction (its batches are sized for the pipe).
GROUP_ROWS = 500_000


@dataclass
class ImportResult:
    source: str
    files_seen: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    bytes_read: int = 0
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    unpriced: int = 0
    report: ParseReport = field(default_factory=ParseReport)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "files_seen": self.files_seen,
            "files_read": self.files_read,
            "files_unchanged": self.files_unchanged,
            "bytes_read": self.bytes_read,
            "records": self.records,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "unpriced": self.unpriced,
            "skipped_lines": self.report.skipped,
            "errors": [str(e) for e in self.report.errors[:20]],
            "seconds": round(self.seconds, 3),
        }


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}; check the path and its permissions") from e


def run_import(
    store: Any,
    adapter: Any,
    *,
    path: Path | None = None,
    files: Iterable[Path] | None = None,
    options: dict[str, Any] | None = None,
    pricer: Any = None,
    on_progress: Callable[[int, int], None] | None = None,
    full: bool = False,
    now: int | None = None,
    pricer_factory: Callable[[], Any] | None = None,
    parallel: bool = True,
) -> ImportResult:
    """Import what is new from ``adapter``'s files (discovered under ``path`` or given as ``files``).

    ``on_progress(done_bytes, total_bytes)`` drives a progress bar. ``full`` ignores remembered progress.
    ``pricer_factory`` (picklable, e.g. ``functools.partial(make_pricer, settings)``) lets a large import
    parse and price in a second process while this one writes (``parallel=False`` never does);
    the results are the same either way. Without ``pricer`` it also builds this process's Pricer, only
    when some file has something new to read.
    """
    started = time.perf_counter()
    options = options or {}
    files = list(files) if files is not None else adapter.discover(path)
    result = ImportResult(source=adapter.name, files_seen=len(files))
    known = {} if full else store.get_progress(adapter.name)
    stats = {p: _stat(p) for p in files}
    todo: list[tuple[Path, int, dict]] = []
    for p in files:
        st = stats[p]
        prev = known.get(str(p))
        if prev and prev.size == st.st_size and prev.mtime_ns == st.st_mtime_ns and prev.inode == st.st_ino:
            result.files_unchanged += 1
            continue
        resume = (
            prev is not None
            and adapter.incremental
            and prev.inode == st.st_ino
            and st.st_size >= prev.size
            and prev.offset <= st.st_size
        )
        state = json.loads(prev.state) if resume and prev.state else {}
        todo.append((p, prev.offset if resume else 0, state))
    total_bytes = bytes_to_read(todo, stats)
    from .fork_ingest import batches_in_forks, worker_count
    from .parallel_ingest import batches_in_worker, use_worker

    forks = worker_count(adapter, todo, stats, parallel) if hasattr(store, "ingest_rows") else 0
    if pricer is None and pricer_factory is not None and todo:
        # Built only when there is something to price: compiling the price table's model patterns is
        # a fifth of a repeat import of unchanged logs (0.05 of 0.28 s, whole process). Forked parsers
        # build their own, at the same time (0.03-0.04 s less before they start).
        if not forks:
            pricer = pricer_factory()
    replace = bool(getattr(adapter, "replace", False))
    run_id = store.start_run(adapter.name, int(time.time()) if now is None else now)
    done_bytes = 0

    def store_batch(b: Batch) -> None:
        if b.rows is not None:
            ins, dup = store.ingest_rows(
                b.rows, progress=b.progress, replace=replace, now=now, deltas=b.deltas, consts=b.consts
            )
        else:
            ins, dup = store.ingest(b.records, progress=b.progress, replace=replace, now=now)
        result.inserted += ins
        result.duplicates += dup

    def write_group(first: Batch, rest: Iterator[Batch]) -> Batch | None:
        """FIRST and the row batches that follow it, up to GROUP_ROWS rows, in one transaction (received
        while it is open). Returns a batch that could not join it (one carrying a reading error), if any."""
        left: list[Batch] = []

        def chunks() -> Iterator[tuple[list[tuple], list[tuple] | None, list[FileProgress], dict | None]]:
            b: Batch | None = first
            n = 0
            while b is not None:
                if b.error is not None or b.rows is None:
                    left.append(b)
                    return
                account(b)
                yield b.rows, b.deltas, b.progress, b.consts
                n += len(b.rows)
                if n >= GROUP_ROWS:
                    return
                b = next(rest, None)

        ins, dup = store.ingest_row_batches(chunks(), replace=replace, now=now)
        result.inserted += ins
        result.duplicates += dup
        return left[0] if left else None

    def account(b: Batch) -> None:
        nonlocal done_bytes
        result.report.merge(b.report)
        result.records += b.report.records
        result.files_read += b.files_read
        result.bytes_read += b.bytes_read
        result.unpriced += b.unpriced
        if in_worker and b.done_bytes != done_bytes:
            done_bytes = b.done_bytes
            if on_progress:
                on_progress(done_bytes, total_bytes)

    largest = max((stats[p].st_size - off for p, off, _ in todo), default=0)
    in_worker = forks > 0 or use_worker(store, adapter, largest, pricer, pricer_factory, parallel)
    if forks:
        factory = pricer_factory if pricer is None else None
        source = batches_in_forks(adapter, todo, stats, options, pricer, forks, pricer_factory=factory)
    elif in_worker:
        source = batches_in_worker(adapter, todo, stats, options, pricer_factory, pricer=pricer)
    else:
        source = produce_batches(adapter, todo, stats, options, pricer, per_file=on_progress)
    # A batch holds 100k records: each of CPython's full collections would walk all of them, and they
    # hold no reference cycles (measured: 1M CSV rows 23.0 s -> 20.5 s without collections).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    group = in_worker and hasattr(store, "ingest_row_batches") and not replace
    rest = iter(source)
    try:
        for b in rest:
            if group and b.error is None and b.rows is not None:
                b = write_group(b, rest)
                if b is None:
                    continue
            account(b)
            if b.error is not None:
                # Reading a file failed: the files read completely before it are kept, as with one
                # batch per file (a failed store write keeps nothing of its batch, as it must).
                if b.progress:
                    try:
                        store_batch(b)
                    except Exception:  # noqa: S110 - the original error is the one to report
                        pass
                raise b.error
            store_batch(b)
    except BaseException as e:
        store.finish_run(run_id, int(time.time()), status="failed", message=str(e)[:500], **_counts(result))
        raise
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
        if gc_was_enabled:
            gc.enable()
    result.seconds = time.perf_counter() - started
    store.finish_run(run_id, int(time.time()), status="ok", **_counts(result))
    store.set_meta("last_collection_at", int(time.time()) if now is None else now)
    return result


def bytes_to_read(todo: Iterable[tuple[Path, int, dict]], stats: dict[Path, os.stat_result]) -> int:
    """The bytes left to read in the files ``(path, offset, state)``: each file's size past its offset."""
    return sum(max(stats[p].st_size - off, 0) for p, off, _ in todo)


@dataclass
class Batch:
    """What one store transaction takes: records (or their row tuples and rollup deltas, when a parsing
    process built them), the progress of the files they complete, and those files' parse reports."""

    records: list[UsageRecord]
    progress: list[FileProgress]
    report: ParseReport
    files_read: int = 0
    bytes_read: int = 0
    done_bytes: int = 0
    unpriced: int = 0
    rows: list[tuple] | None = None
    deltas: list[tuple] | None = None
    error: BaseException | None = None
    # Columns left out of ``rows`` because every row holds the same value (``split_constants``).
    consts: dict[int, Any] | None = None
    # The records as one list per UsageRecord field (``produce_batches(columnar=True)``), not as objects.
    columns: list[list] | None = None


def produce_batches(
    adapter: Any,
    todo: Iterable[tuple[Path, int, dict]],
    stats: dict[Path, os.stat_result],
    options: dict[str, Any],
    pricer: Any,
    *,
    per_file: Callable[[int, int], None] | None = None,
    batch_records: int | None = None,
    batch_files: int | None = None,
    ramp_from: int | None = None,
    columnar: bool = False,
) -> Iterator[Batch]:
    """Read TODO files ``(path, offset, state)`` in order with one shared ``run`` dict and cut them into
    priced batches. A file failing to read ends the stream with a batch carrying the error and the
    files read completely before it. ``columnar``: batches carry their records as ``columns`` (one
    list per UsageRecord field), taken as such from adapters that can yield RecordColumns."""
    batch_records = batch_records or BATCH_RECORDS
    batch_files = batch_files or BATCH_FILES
    # ``ramp_from``: the first batches are smaller (growing by a quarter up to batch_records), so a writer in
    # another process starts early instead of waiting for a whole batch to be parsed.
    limit = min(ramp_from or batch_records, batch_records)
    run: dict[str, Any] = {}
    # Small files (one Claude session each) are grouped: several files' records and progress go in one
    # transaction, so a crash still leaves the database as it was before that batch. Adapters whose later
    # copy of a key replaces the stored one keep one file per batch: across files the last copy must win.
    group = not bool(getattr(adapter, "replace", False))
    # The files to read may come as an iterator (a forked worker's claimed shards): they are walked once,
    # and their bytes summed only for PER_FILE, which a worker does not use.
    total_bytes = bytes_to_read(todo, stats) if per_file else 0
    read_options = {**options, COLUMNS_OPTION: True} if columnar else options
    batch: list[UsageRecord | RecordColumns] = []
    count = 0  # records in batch
    pending: list[FileProgress] = []
    reports = ParseReport()
    files_read = bytes_read = done_bytes = 0

    def cut(records: list[Any], error: BaseException | None = None) -> Batch:
        nonlocal pending, reports, files_read, bytes_read
        if columnar:
            cols = as_columns(records)
            if pricer is not None:
                pricer.apply_columns(cols)
            b = Batch([], pending, reports, files_read, bytes_read, done_bytes, cols[_COST].count(None))
            b.columns = cols
            b.error = error
        else:
            recs = list(pricer.apply(records)) if pricer is not None else records
            b = Batch(
                recs,
                pending,
                reports,
                files_read,
                bytes_read,
                done_bytes,
                sum(1 for r in recs if r.cost_usd is None),
                error=error,
            )
        pending, reports, files_read, bytes_read = [], ParseReport(), 0, 0
        return b

    def cut_full() -> Batch:
        """The batch that just reached ``limit`` records, cut; the next one may be larger."""
        nonlocal batch, count, limit, file_start
        b = cut(batch)
        batch, count, file_start = [], 0, 0
        limit = min(limit * 5 // 4, batch_records)
        return b

    file_start = 0
    for p, offset, state in todo:
        st = stats[p]
        report = ParseReport()
        file_start = len(batch)
        try:
            for rec in adapter.read(
                p, offset=offset, state=state, run=run, report=report, options=read_options
            ):
                if type(rec) is RecordColumns:
                    # Cut where a batch of records would be cut: at exactly ``limit`` records.
                    while count + rec.n >= limit:
                        head, rec = rec.split(limit - count)
                        batch.append(head)
                        yield cut_full()
                    if rec.n:
                        batch.append(rec)
                        count += rec.n
                    continue
                batch.append(rec)
                count += 1
                if count >= limit:
                    yield cut_full()
        except Exception as e:
            yield cut(batch[:file_start] if pending else [], error=e)
            return
        reports.merge(report)
        files_read += 1
        new_offset = int(state.get("offset", st.st_size))
        bytes_read += max(new_offset - offset, 0)
        done_bytes += max(st.st_size - offset, 0)
        pending.append(
            FileProgress(
                source=adapter.name,
                path=str(p),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                offset=new_offset,
                inode=st.st_ino,
                state=json.dumps(state),
            )
        )
        if not group or len(pending) >= batch_files:
            yield cut(batch)
            batch = []
            count = 0
        if per_file:
            per_file(done_bytes, total_bytes)
    if pending or batch:
        yield cut(batch)


_GETTERS = [attrgetter(name) for name in RECORD_FIELDS]
_COST = FIELD_INDEX["cost_usd"]


def as_columns(items: Sequence[UsageRecord | RecordColumns]) -> list[list]:
    """Records and RecordColumns chunks, in order, as one list per UsageRecord field."""
    cols: list[list] = [[] for _ in _GETTERS]
    run: list[UsageRecord] = []

    def flush() -> None:
        for col, get in zip(cols, _GETTERS):
            col.extend(map(get, run))
        run.clear()

    for item in items:
        if type(item) is RecordColumns:
            if run:
                flush()
            for col, values in zip(cols, item.columns):
                col.extend(values)
        else:
            run.append(item)
    if run:
        flush()
    return cols


def _counts(r: ImportResult) -> dict[str, int]:
    return {
        "files": r.files_read,
        "records_read": r.records,
        "inserted": r.inserted,
        "duplicates": r.duplicates,
        "skipped": r.report.skipped,
    }


def ingest_records(
    store: Any, records: list[UsageRecord], *, pricer: Any = None, replace: bool = False
) -> tuple[int, int]:
    """Price and store records produced in-process (manual `oaim log`, proxy, SDK instrumentation)."""
    recs = list(pricer.apply(records)) if pricer is not None else records
    return store.ingest(recs, replace=replace)
