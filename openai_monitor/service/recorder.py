"""Writes captured API calls to the store from a background thread, off the request path.

Callers (the proxy's event loop, instrumented SDK clients) only ``submit()`` a :class:`CapturedCall`: a
lock-free queue put. The writer thread parses bodies, estimates missing usage, prices the records and
ingests them in batches (one transaction per batch, plus rate-limit snapshots). A database error is logged
and counted, never raised to the caller; ``close()`` drains and flushes the queue.

Rate-limit snapshots are coalesced per batch to the newest one per (provider, api key, model): at hundreds
of calls per second a row per response would say nothing more about headroom.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..domain import UsageRecord
from ..sources.responses import (
    CapturedCall,
    ParsedResponse,
    decode_body,
    make_record,
    parse_request,
    parse_response,
    rate_limit_snapshot,
    usage_kind,
)

log = logging.getLogger("openai_monitor.recorder")

_SNAPSHOT_COLUMNS = (
    "ts",
    "provider",
    "model",
    "api_key_hash",
    "limit_requests",
    "remaining_requests",
    "reset_requests_s",
    "limit_tokens",
    "remaining_tokens",
    "reset_tokens_s",
    "raw_json",
)
_SNAPSHOT_SQL = (
    f"INSERT INTO ratelimit_snapshots ({', '.join(_SNAPSHOT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _SNAPSHOT_COLUMNS)})"
)


@dataclass
class RecorderStats:
    submitted: int = 0
    recorded: int = 0  # usage records written (new or duplicate)
    estimated: int = 0  # of which tokens were estimated
    passthrough: int = 0  # calls without usage (errors, non-billable endpoints)
    snapshots: int = 0
    dropped: int = 0  # queue full
    failed: int = 0  # lost to a database or parsing error (logged)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def process_call(call: CapturedCall) -> tuple[UsageRecord | None, dict[str, Any] | None]:
    """The usage record (None for calls that bill nothing) and rate-limit snapshot of one call."""
    from .estimate import estimate_usage

    kind = usage_kind(call.provider, call.method, call.path)
    req = parse_request(call.provider, kind or "", call.request_body) if kind else None
    snapshot = None
    if call.rate_headers:
        snapshot = rate_limit_snapshot(
            call.provider,
            call.rate_headers,
            now=call.ts,
            model=req.model if req else "",
            api_key_hash=call.api_key_hash,
        )
    if kind is None or req is None or not (200 <= call.status < 300):
        return None, snapshot
    body = decode_body(call.response_body, call.content_encoding)
    resp = parse_response(call.provider, kind, body, call.content_type) if body else ParsedResponse()
    if not call.complete:
        resp.complete = False
    if resp.tokens is not None:
        return make_record(call, req, resp, resp.tokens, estimated=False), snapshot
    tokens = estimate_usage(resp.model or req.model, req, resp)
    return make_record(call, req, resp, tokens, estimated=True), snapshot


class Recorder:
    """Background writer. ``store`` is a :class:`openai_monitor.store.Store`; ``pricer`` prices records."""

    def __init__(
        self,
        store: Any,
        pricer: Any = None,
        *,
        max_batch: int = 2000,
        max_queue: int = 200_000,
        linger: float = 0.05,
    ) -> None:
        self.store = store
        self.pricer = pricer
        self.max_batch = max_batch
        self.max_queue = max_queue
        # After the first call of a batch, wait this long for more: one transaction for many calls, and
        # the writer holds the GIL (which the proxy's event loop needs) in fewer, larger slices.
        self.linger = linger
        self.stats = RecorderStats()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- caller side (any thread; never blocks, never raises) ------------------------------------------
    def start(self) -> Recorder:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="oaim-recorder", daemon=True)
                self._thread.start()
        return self

    def submit(self, call: CapturedCall) -> bool:
        """Queue a call for recording; False (and counted as dropped) when closed or the queue is full."""
        self.stats.submitted += 1
        if self._closed or self._q.qsize() >= self.max_queue:
            self.stats.dropped += 1
            if self.stats.dropped in (1, 1000) or self.stats.dropped % 100_000 == 0:
                log.error("recording queue full or closed: %d calls not recorded so far", self.stats.dropped)
            return False
        if self._thread is None:
            self.start()
        self._q.put(call)
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every call submitted before now is written (or failed). False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            return self._q.empty()
        done = threading.Event()
        self._q.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting calls, write what is queued, stop the thread."""
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("recorder did not finish writing within %.0f s; some calls may be lost", timeout)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._q.get()
            batch: list[CapturedCall] = []
            events: list[threading.Event] = []
            if self.linger > 0 and isinstance(item, CapturedCall):
                time.sleep(self.linger)
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    batch.append(item)
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            for ev in events:
                ev.set()

    def _write(self, batch: list[CapturedCall]) -> None:
        records: list[UsageRecord] = []
        snapshots: dict[tuple[str, str, str], dict[str, Any]] = {}
        for call in batch:
            try:
                rec, snap = process_call(call)
            except Exception:  # a body we cannot parse must not stop the writer
                log.exception("cannot parse a %s response to %s; call not recorded", call.provider, call.path)
                self.stats.failed += 1
                continue
            if rec is None:
                self.stats.passthrough += 1
            else:
                records.append(rec)
            if snap is not None:
                snapshots[(snap["provider"], snap["api_key_hash"], snap["model"])] = snap
        if records:
            self._ingest(records)
        if snapshots:
            self._save_snapshots(list(snapshots.values()))

    def _ingest(self, records: list[UsageRecord]) -> None:
        from .ingest import ingest_records

        started = time.perf_counter()
        try:
            ingest_records(self.store, records, pricer=self.pricer)
        except Exception as e:
            self.stats.failed += len(records)
            log.error("could not write %d usage records to the database: %s", len(records), e)
            return
        self.stats.recorded += len(records)
        self.stats.estimated += sum(1 for r in records if r.tokens_estimated)
        log.debug("wrote %d records in %.1f ms", len(records), (time.perf_counter() - started) * 1000)

    def _save_snapshots(self, rows: list[dict[str, Any]]) -> None:
        from sqlalchemy import text

        try:
            with self.store.engine.begin() as conn:
                conn.execute(text(_SNAPSHOT_SQL), rows)
        except Exception as e:
            log.error("could not write %d rate-limit snapshots: %s", len(rows), e)
            return
        self.stats.snapshots += len(rows)
