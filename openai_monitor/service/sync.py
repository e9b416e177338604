"""Sync provider usage and cost APIs into the store: pagination, retries, incremental resume.

* **Pagination:** follow ``has_more`` / ``next_page`` (passed back as ``page``).
* **Retries:** 429 and 5xx are retried with exponential backoff; a ``retry-after`` (seconds or HTTP date)
  or ``retry-after-ms`` header replaces the computed delay. Network errors are retried too.
* **Incremental:** each endpoint remembers in ``sync_state`` the start of the first bucket that was not
  complete at the last sync (a bucket is complete once it ended ``settle_seconds`` ago: the APIs fill
  buckets with some delay). The next sync starts there; every fetched bucket is written with
  ``store.ingest(..., replace=True)`` under a key per (endpoint, bucket, group values), so a partial
  bucket that grew replaces its stored copy instead of being counted twice.
* **Costs:** a re-fetched day replaces all billed rows of that day (delete + insert, one transaction).

The key is sent only in the request header; it is never logged or stored here.
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..domain import COUNT_FIELDS, ParseReport, UsageRecord
from ..errors import CollectorError
from ..sources import anthropic_usage as au
from ..sources import openai_usage as ou

OPENAI_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_LOOKBACK_DAYS = 30
# Usage APIs fill a bucket some time after it ends; a bucket younger than this is fetched again.
DEFAULT_SETTLE_SECONDS = 3600

_FIX = {
    "openai": (
        "set an admin key with `oaim keys set openai-admin` or OPENAI_ADMIN_KEY "
        "(an ordinary project key is not accepted: use an admin key)"
    ),
    "anthropic": (
        "set an Admin API key (sk-ant-admin...) with `oaim keys set anthropic-admin` or ANTHROPIC_ADMIN_KEY "
        "(an ordinary API key is not accepted: use an admin key)"
    ),
}


@dataclass
class RetryPolicy:
    attempts: int = 6  # total tries per request
    transport_attempts: int = 3  # tries when the host cannot be reached at all
    base_delay_s: float = 0.5
    max_delay_s: float = 60.0
    max_retry_after_s: float = 300.0  # a longer server-requested wait fails instead of hanging the CLI


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    waits_s: list[float] = field(default_factory=list)


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, ``retry-after`` seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(float(ra), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(when.timestamp() - now, 0.0)


class ApiClient:
    """A small JSON GET client over httpx with retries; ``sleep`` is injectable for tests."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: dict[str, str],
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.stats = ClientStats()
        self._httpx = httpx
        self._client = httpx.Client(headers=headers, timeout=timeout_s, follow_redirects=True)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, attempt: int, server_wait: float | None) -> None:
        delay = server_wait if server_wait is not None else self.retry.base_delay_s * (2**attempt)
        delay = min(delay, self.retry.max_delay_s if server_wait is None else self.retry.max_retry_after_s)
        self.stats.retries += 1
        self.stats.waits_s.append(delay)
        self.sleep(delay)

    def get_json(self, path: str, params: list[tuple[str, str]]) -> Any:
        url = self.base_url + path
        last = ""
        for attempt in range(self.retry.attempts):
            self.stats.requests += 1
            try:
                resp = self._client.get(url, params=params)
            except self._httpx.TransportError as e:
                last = f"cannot reach {self.base_url} ({type(e).__name__})"
                # A dead host rarely comes back within seconds: fewer tries than for 429/5xx.
                if attempt + 1 < min(self.retry.attempts, self.retry.transport_attempts):
                    self._wait(attempt, None)
                    continue
                raise CollectorError(
                    f"{last}; check the network connection or pass the right --base-url"
                ) from None
            status = resp.status_code
            if status in (401, 403):
                raise CollectorError(
                    f"the {self.provider} admin API rejected the key (HTTP {status}): {_FIX[self.provider]}"
                )
            if status == 429 or status >= 500:
                last = f"HTTP {status}"
                wait = retry_after_seconds(resp.headers)
                if wait is not None and wait > self.retry.max_retry_after_s:
                    raise CollectorError(
                        f"{self.provider} asked to wait {wait:.0f} s before retrying (HTTP {status}); "
                        "run the sync again later"
                    )
                if attempt + 1 < self.retry.attempts:
                    self._wait(attempt, wait)
                    continue
                raise CollectorError(
                    f"{self.provider} API kept failing ({last}) after {self.retry.attempts} tries; "
                    "run the sync again later"
                )
            if status >= 400:
                raise CollectorError(
                    f"{self.provider} API error HTTP {status} on {path}: {_error_message(resp)}; "
                    "check --since / --bucket and --base-url"
                )
            try:
                return resp.json()
            except ValueError:
                raise CollectorError(
                    f"{path} did not return JSON (HTTP {status}); check that --base-url points at the API"
                ) from None
        raise CollectorError(f"{self.provider} API kept failing ({last}); run the sync again later")

    def paginate(self, path: str, params: list[tuple[str, str]], page_param: str = "page") -> Iterator[Any]:
        """Yield every page, following ``has_more`` / ``next_page``."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = self.get_json(path, params + ([(page_param, cursor)] if cursor else []))
            yield page
            cursor = page.get("next_page") if isinstance(page, dict) else None
            if not (isinstance(page, dict) and page.get("has_more") and cursor):
                return
            if cursor in seen:  # a server repeating a cursor would loop forever
                raise CollectorError(
                    f"{path} returned the same next_page twice; the API pagination is broken"
                )
            seen.add(cursor)


def _error_message(resp: Any) -> str:
    try:
        body = resp.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:200]
    except ValueError:
        pass
    return resp.text[:200].strip() or "no details"


# -- result --------------------------------------------------------------------------------------------


@dataclass
class EndpointResult:
    endpoint: str
    start: int
    resume_ts: int
    buckets: int = 0
    partial_buckets: int = 0
    records: int = 0
    new_records: int = 0
    replaced: int = 0
    billed_rows: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SyncResult:
    provider: str
    bucket: str
    endpoints: list[EndpointResult] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def new_records(self) -> int:
        return sum(e.new_records for e in self.endpoints)

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "bucket": self.bucket,
            "requests": self.requests,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "new_records": self.new_records,
            "endpoints": [dataclasses.asdict(e) for e in self.endpoints],
        }


# -- state ---------------------------------------------------------------------------------------------


def _get_state(store: Any, provider: str, endpoint: str) -> tuple[int, int] | None:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        row = conn.execute(
            text("SELECT bucket_seconds, resume_ts FROM sync_state WHERE provider = :p AND endpoint = :e"),
            {"p": provider, "e": endpoint},
        ).first()
    return None if row is None else (int(row[0]), int(row[1]))


def _set_state(store: Any, provider: str, endpoint: str, width: int, resume: int, now: int) -> None:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sync_state (provider, endpoint, bucket_seconds, resume_ts, last_sync_at, last_status) "
                "VALUES (:p, :e, :w, :r, :t, 'ok') ON CONFLICT (provider, endpoint) DO UPDATE SET "
                "bucket_seconds = excluded.bucket_seconds, resume_ts = excluded.resume_ts, "
                "last_sync_at = excluded.last_sync_at, last_status = excluded.last_status"
            ),
            {"p": provider, "e": endpoint, "w": width, "r": resume, "t": now},
        )


def _has_rows(store: Any, table: str, source: str) -> bool:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return (
            conn.execute(text(f"SELECT 1 FROM {table} WHERE source = :s LIMIT 1"), {"s": source}).first()
            is not None
        )


def _start_for(
    store: Any,
    provider: str,
    endpoint: str,
    width: int,
    bucket_name: str,
    since: int | None,
    now: int,
    lookback_days: int,
    state_valid: bool,
) -> int:
    state = _get_state(store, provider, endpoint) if state_valid else None
    if state is not None and state[0] != width:
        old = {86400: "1d", 3600: "1h", 60: "1m"}.get(state[0], f"{state[0]}s")
        raise CollectorError(
            f"{provider} {endpoint} usage was synced with --bucket {old}; keep --bucket {old} "
            f"(mixing bucket widths would count the same usage twice) or `oaim reset` to start over"
        )
    if since is not None:
        start = since
    elif state is not None:
        start = state[1]
    else:
        start = now - lookback_days * 86400
    return start - start % width


def _resume(buckets: list[tuple[int, int]], start: int, cutoff: int) -> tuple[int, int]:
    """(resume ts, partial bucket count): the first bucket not complete at ``cutoff``."""
    if not buckets:
        return start, 0
    partial = [s for s, e in buckets if e > cutoff]
    if partial:
        return min(partial), len(set(partial))
    return max(e for _, e in buckets), 0


def _existing_keys(store: Any, keys: list[str]) -> int:
    from sqlalchemy import bindparam, text

    found = 0
    stmt = text("SELECT COUNT(*) FROM usage_records WHERE dedup_key IN :keys").bindparams(
        bindparam("keys", expanding=True)
    )
    with store.engine.connect() as conn:
        for i in range(0, len(keys), 500):
            found += conn.execute(stmt, {"keys": keys[i : i + 500]}).scalar_one()
    return found


def merge_same_key(records: list[UsageRecord]) -> list[UsageRecord]:
    """Sum results of one page that share a key: the API grouped them by a field it did not return (older
    payloads omit e.g. ``batch``), so they are distinct slices of the same bucket, not repeats."""
    out: dict[str, UsageRecord] = {}
    for r in records:
        prev = out.get(r.dedup_key)
        if prev is None:
            out[r.dedup_key] = r
            continue
        for f in COUNT_FIELDS:
            setattr(prev, f, getattr(prev, f) + getattr(r, f))
    return list(out.values())


def _write_usage(store: Any, records: list[UsageRecord], res: EndpointResult) -> None:
    # Several pages may repeat a bucket's group (a cursor that split a bucket): keep the last copy.
    unique = list({r.dedup_key: r for r in records}.values())
    res.records = len(unique)
    if not unique:
        return
    res.replaced = _existing_keys(store, [r.dedup_key for r in unique])
    store.ingest(unique, replace=True)
    res.new_records = res.records - res.replaced


def _write_billed(store: Any, source: str, days: set[int], costs: list[ou.BilledCost], now: int) -> int:
    from sqlalchemy import bindparam, text

    if not days:
        return 0
    with store.engine.begin() as conn:
        conn.execute(
            text("DELETE FROM billed_costs WHERE source = :s AND day IN :days").bindparams(
                bindparam("days", expanding=True)
            ),
            {"s": source, "days": sorted(days)},
        )
        if costs:
            conn.execute(
                text(
                    "INSERT INTO billed_costs (provider, source, day, project, line_item, model, amount, currency, "
                    "amount_usd, quantity, fetched_at) VALUES (:provider, :source, :day, :project, :line_item, "
                    ":model, :amount, :currency, :amount_usd, :quantity, :now)"
                ),
                [
                    {
                        "provider": c.provider,
                        "source": c.source,
                        "day": c.day,
                        "project": c.project,
                        "line_item": c.line_item,
                        "model": c.model,
                        "amount": c.amount,
                        "currency": c.currency,
                        "amount_usd": c.amount_usd,
                        "quantity": c.quantity,
                        "now": now,
                    }
                    for c in costs
                ],
            )
    return len(costs)


def _finish_endpoint(
    store: Any,
    provider: str,
    res: EndpointResult,
    width: int,
    buckets: set[tuple[int, int]],
    report: ParseReport,
    now: int,
    settle_seconds: int,
) -> None:
    """Record what one endpoint fetched and remember where the next sync resumes."""
    res.resume_ts, res.partial_buckets = _resume(sorted(buckets), res.start, now - settle_seconds)
    res.buckets, res.skipped = len(buckets), report.skipped
    res.errors = [str(e) for e in report.errors[:10]]
    _set_state(store, provider, res.endpoint, width, res.resume_ts, now)


def _sync_costs(
    store: Any,
    client: ApiClient,
    *,
    provider: str,
    endpoint: str,
    source: str,
    path: str,
    params: Callable[[int], list[tuple[str, str]]],
    parse: Callable[[Any, ParseReport], Iterator[tuple[int, int, ou.BilledCost | None]]],
    since: int | None,
    now: int,
    settle_seconds: int,
    lookback_days: int,
) -> EndpointResult:
    """Fetch a daily cost endpoint (``params(start)`` builds its query) and replace the billed rows of
    every day it returned."""
    valid = _has_rows(store, "billed_costs", source)
    start = _start_for(store, provider, endpoint, 86400, "1d", since, now, lookback_days, valid)
    res = EndpointResult(endpoint=endpoint, start=start, resume_ts=start)
    report = ParseReport()
    costs: list[ou.BilledCost] = []
    buckets: set[tuple[int, int]] = set()
    for page in client.paginate(path, params(start)):
        for s, e, cost in parse(page, report):
            buckets.add((s, e))
            if cost is not None:
                costs.append(cost)
    res.billed_rows = _write_billed(store, source, {s for s, _ in buckets}, costs, now)
    _finish_endpoint(store, provider, res, 86400, buckets, report, now, settle_seconds)
    return res


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- OpenAI --------------------------------------------------------------------------------------------


def sync_openai(
    store: Any,
    key: str,
    *,
    base_url: str = OPENAI_BASE_URL,
    since: int | None = None,
    bucket: str = "1d",
    now: int | None = None,
    pricer: Any = None,
    endpoints: list[str] | None = None,
    costs: bool = True,
    settle_seconds: int = DEFAULT_SETTLE_SECONDS,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncResult:
    """Fetch OpenAI organization usage (and costs) since the last sync (or ``since``) into ``store``."""
    if bucket not in ("1h", "1d"):
        raise CollectorError(f"unknown --bucket {bucket!r}; use 1h or 1d")
    started = time.perf_counter()
    now = int(time.time()) if now is None else now
    width = ou.BUCKET_SECONDS[bucket]
    result = SyncResult(provider="openai", bucket=bucket)
    names = list(ou.ENDPOINTS) if endpoints is None else endpoints
    unknown = [n for n in names if n not in ou.ENDPOINTS]
    if unknown:
        raise CollectorError(f"unknown usage endpoint(s) {unknown}; use some of: {', '.join(ou.ENDPOINTS)}")
    usage_state_valid = _has_rows(store, "usage_records", ou.SOURCE)
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    with ApiClient("openai", base_url, headers, retry=retry, sleep=sleep) as client:
        try:
            for name in names:
                ep = ou.ENDPOINTS[name]
                start = _start_for(
                    store, "openai", name, width, bucket, since, now, lookback_days, usage_state_valid
                )
                res = EndpointResult(endpoint=name, start=start, resume_ts=start)
                params = [
                    ("start_time", str(start)),
                    ("bucket_width", bucket),
                    ("limit", str(ou.MAX_LIMIT[bucket])),
                ]
                params += [("group_by", g) for g in ep.group_by]
                report = ParseReport()
                records: list[UsageRecord] = []
                buckets: set[tuple[int, int]] = set()
                for page in client.paginate(ep.path, params):
                    page_recs: list[UsageRecord] = []
                    for s, e, rec in ou.parse_usage_page(name, page, report):
                        buckets.add((s, e))
                        if rec is not None:
                            page_recs.append(rec)
                    records.extend(merge_same_key(page_recs))
                priced = [r for r in records if not r.cost_reported]
                if pricer is not None and priced:
                    list(pricer.apply(priced))
                _write_usage(store, records, res)
                _finish_endpoint(store, "openai", res, width, buckets, report, now, settle_seconds)
                result.endpoints.append(res)
            if costs:
                result.endpoints.append(
                    _sync_openai_costs(store, client, since, now, settle_seconds, lookback_days)
                )
        finally:
            result.requests, result.retries = client.stats.requests, client.stats.retries
    store.set_meta("last_sync_openai_at", now)
    result.seconds = time.perf_counter() - started
    return result


def _sync_openai_costs(
    store: Any, client: ApiClient, since: int | None, now: int, settle_seconds: int, lookback_days: int
) -> EndpointResult:
    def params(start: int) -> list[tuple[str, str]]:
        p = [("start_time", str(start)), ("bucket_width", "1d"), ("limit", str(ou.COSTS_MAX_LIMIT))]
        return p + [("group_by", g) for g in ou.COSTS_GROUP_BY]

    return _sync_costs(
        store,
        client,
        provider="openai",
        endpoint="costs",
        source=ou.COSTS_SOURCE,
        path=ou.COSTS_PATH,
        params=params,
        parse=ou.parse_costs_page,
        since=since,
        now=now,
        settle_seconds=settle_seconds,
        lookback_days=lookback_days,
    )


# -- Anthropic -----------------------------------------------------------------------------------------


def _price_anthropic(pricer: Any, rec: UsageRecord, context_window: str) -> None:
    """The usage report has no request count (``requests`` = 0), yet the long-context tier is chosen per
    request. The report's ``context_window`` says which tier the tokens paid, so the price is computed on
    a copy whose request count puts the average input per request in that tier."""
    long_context = context_window not in ("", "0-200k")
    shadow = dataclasses.replace(rec, requests=1 if long_context else max(rec.input_tokens, 1))
    rec.cost_usd, rec.price_version = pricer.cost(shadow)


def sync_anthropic(
    store: Any,
    key: str,
    *,
    base_url: str = ANTHROPIC_BASE_URL,
    since: int | None = None,
    bucket: str = "1d",
    now: int | None = None,
    pricer: Any = None,
    costs: bool = True,
    settle_seconds: int = DEFAULT_SETTLE_SECONDS,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncResult:
    """Fetch the Anthropic Admin API messages usage report (and cost report) into ``store``."""
    if bucket not in ("1h", "1d"):
        raise CollectorError(f"unknown --bucket {bucket!r}; use 1h or 1d")
    started = time.perf_counter()
    now = int(time.time()) if now is None else now
    width = 86400 if bucket == "1d" else 3600
    result = SyncResult(provider="anthropic", bucket=bucket)
    headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION, "Accept": "application/json"}
    with ApiClient("anthropic", base_url, headers, retry=retry, sleep=sleep) as client:
        try:
            valid = _has_rows(store, "usage_records", au.SOURCE)
            start = _start_for(
                store, "anthropic", "messages", width, bucket, since, now, lookback_days, valid
            )
            res = EndpointResult(endpoint="messages", start=start, resume_ts=start)
            params = [
                ("starting_at", _rfc3339(start)),
                ("bucket_width", bucket),
                ("limit", str(au.MAX_LIMIT[bucket])),
            ]
            params += [("group_by[]", g) for g in au.USAGE_GROUP_BY]
            report = ParseReport()
            records: list[UsageRecord] = []
            buckets: set[tuple[int, int]] = set()
            for page in client.paginate(au.USAGE_PATH, params):
                page_recs: list[UsageRecord] = []
                windows: dict[str, str] = {}
                for s, e, rec, window in au.parse_usage_page(page, report):
                    buckets.add((s, e))
                    if rec is not None:
                        page_recs.append(rec)
                        windows[rec.dedup_key] = window
                for rec in merge_same_key(page_recs):
                    if pricer is not None:
                        _price_anthropic(pricer, rec, windows[rec.dedup_key])
                    records.append(rec)
            _write_usage(store, records, res)
            _finish_endpoint(store, "anthropic", res, width, buckets, report, now, settle_seconds)
            result.endpoints.append(res)
            if costs:
                result.endpoints.append(
                    _sync_anthropic_costs(store, client, since, now, settle_seconds, lookback_days)
                )
        finally:
            result.requests, result.retries = client.stats.requests, client.stats.retries
    store.set_meta("last_sync_anthropic_at", now)
    result.seconds = time.perf_counter() - started
    return result


def _sync_anthropic_costs(
    store: Any, client: ApiClient, since: int | None, now: int, settle_seconds: int, lookback_days: int
) -> EndpointResult:
    def params(start: int) -> list[tuple[str, str]]:
        p = [("starting_at", _rfc3339(start)), ("bucket_width", "1d"), ("limit", str(au.COST_MAX_LIMIT))]
        return p + [("group_by[]", g) for g in au.COST_GROUP_BY]

    return _sync_costs(
        store,
        client,
        provider="anthropic",
        endpoint="cost_report",
        source=au.COSTS_SOURCE,
        path=au.COST_PATH,
        params=params,
        parse=au.parse_cost_page,
        since=since,
        now=now,
        settle_seconds=settle_seconds,
        lookback_days=lookback_days,
    )
