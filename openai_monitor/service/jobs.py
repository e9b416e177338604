"""The daemon's jobs, also run on demand by ``oaim daemon run-job NAME``.

* ``collect``: every enabled source of ``[sources.*]`` (its ``paths``, or the tool's default locations) via
  ``run_import``, plus the provider usage APIs when that feature is configured;
* ``detect``: score the hours collected since the last detection for anomalies;
* ``check``: turn findings into alerts: new anomalies, budget thresholds, forecast limit warnings,
  collection failing repeatedly, data gone stale;
* ``retrain``: the training pipeline (daily, and on demand).

Each run is a ``job_runs`` row (started, finished, status, error). A job that raises is recorded as
failed and logged; it never propagates into the scheduler, so one failing job cannot stop the others.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, MonitorError

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("openai_monitor.jobs")

JOB_NAMES = ("collect", "detect", "check", "retrain")
# Files imported per transaction group; the stop flag is looked at between groups so SIGTERM finishes
# the current group (each file is its own transaction inside it) and loses nothing.
FILES_PER_GROUP = 50
# Source config keys that are not adapter options.
_SOURCE_KEYS = {"enabled", "paths"}
# An anomaly older than this is history, not news: never alerted (e.g. on the first run over old logs).
ANOMALY_ALERT_WINDOW_SECONDS = 7 * 86400


@dataclass
class JobContext:
    url: str
    settings: Settings
    now: int | None = None  # fixed clock for tests; None = wall clock at each use
    stop: threading.Event = field(default_factory=threading.Event)
    _store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from ..store import Store

            self._store = Store(self.url)
        return self._store

    def clock(self) -> int:
        return int(time.time()) if self.now is None else self.now

    def aware_now(self) -> Any:
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self.clock(), timezone.utc)


@dataclass
class JobResult:
    job: str
    run_id: int
    status: str  # ok | failed | stopped
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "run_id": self.run_id,
            "status": self.status,
            "error": self.error,
            "result": self.result,
            "seconds": round(self.seconds, 3),
        }


# -- collect ---------------------------------------------------------------------------------------


def _adapter_name(config_key: str) -> str:
    return config_key.replace("_", "-")


def _source_sections(settings: Settings) -> dict[str, Any]:
    sources = settings.sources
    out = {name: getattr(sources, name) for name in type(sources).model_fields}
    for name, conf in (sources.model_extra or {}).items():
        if name not in API_SOURCES:
            out[name] = conf
    return out


def _as_dict(conf: Any) -> dict[str, Any]:
    if hasattr(conf, "model_dump"):
        return conf.model_dump()
    return dict(conf) if isinstance(conf, dict) else {}


def collect(ctx: JobContext) -> dict[str, Any]:
    """Import what is new from every enabled source. Raises MonitorError naming the sources that failed,
    after the others were imported."""
    from ..service.ingest import run_import
    from ..service.pricing import make_pricer
    from ..sources import ADAPTERS

    store = ctx.store
    pricer = make_pricer(ctx.settings)
    results: dict[str, Any] = {}
    failures: list[str] = []
    for key, raw in _source_sections(ctx.settings).items():
        conf = _as_dict(raw)
        if not conf.get("enabled", True):
            continue
        name = _adapter_name(key)
        adapter = ADAPTERS.get(name)
        if adapter is None:
            failures.append(f"{key}: unknown source; use one of {', '.join(sorted(ADAPTERS))}")
            continue
        paths = [Path(p).expanduser() for p in conf.get("paths") or []]
        if not paths and name == "csv":
            continue  # CSV has no default location: enabled without paths means nothing to read
        options = {k: v for k, v in conf.items() if k not in _SOURCE_KEYS}
        summary = {"files_read": 0, "records": 0, "inserted": 0, "duplicates": 0, "skipped": 0}
        status = "ok"
        for path in paths or [None]:
            if ctx.stop.is_set():
                status = "stopped"
                break
            try:
                files = adapter.discover(path)
            except InputError as e:
                if path is None:
                    status = "absent"  # the tool is not installed here: not a failure
                    continue
                failures.append(f"{key}: {e}")
                status = "failed"
                continue
            for i in range(0, len(files), FILES_PER_GROUP):
                if ctx.stop.is_set():
                    status = "stopped"
                    break
                try:
                    r = run_import(
                        store, adapter, files=files[i : i + FILES_PER_GROUP], options=options, pricer=pricer
                    )
                except MonitorError as e:
                    failures.append(f"{key}: {e}")
                    status = "failed"
                    break
                summary["files_read"] += r.files_read
                summary["records"] += r.records
                summary["inserted"] += r.inserted
                summary["duplicates"] += r.duplicates
                summary["skipped"] += r.report.skipped
        results[key] = {"status": status, **summary}
    api = _collect_usage_apis(ctx)
    if api is not None:
        results["usage_api"] = api
        if api.get("status") == "failed":
            failures.append(f"usage_api: {api.get('error')}")
    if failures:
        raise _JobFailed(f"collection failed for {'; '.join(failures)}", results)
    return results


class _JobFailed(MonitorError):
    """A job that did part of its work: ``results`` is what it did, kept in the job's run record."""

    def __init__(self, message: str, results: dict[str, Any]):
        super().__init__(message)
        self.results = results


API_SOURCES = {"openai_api": ("openai", "sync_openai"), "anthropic_api": ("anthropic", "sync_anthropic")}


def _collect_usage_apis(ctx: JobContext) -> dict[str, Any] | None:
    """Provider usage APIs, for each provider whose admin key is set (``oaim keys set``) unless
    ``[sources.openai_api] enabled = false`` (options: ``base_url``, ``bucket``)."""
    import importlib.util

    if importlib.util.find_spec("openai_monitor.service.sync") is None:
        return None
    from . import sync
    from .keys import get_key
    from .pricing import make_pricer

    sections = ctx.settings.sources.model_extra or {}
    out: dict[str, Any] = {}
    for section, (provider, fn_name) in API_SOURCES.items():
        conf = _as_dict(sections.get(section, {}))
        if conf.get("enabled", True) is False:
            continue
        key = get_key(f"{provider}-admin")
        if not key:
            continue
        kwargs = {k: conf[k] for k in ("base_url", "bucket") if k in conf}
        try:
            res = getattr(sync, fn_name)(
                ctx.store, key, now=ctx.clock(), pricer=make_pricer(ctx.settings), **kwargs
            )
            out[section] = {"status": "ok", "result": _jsonable(res)}
        except MonitorError as e:
            out[section] = {"status": "failed", "error": str(e)}
    if not out:
        return None
    failed = [f"{k}: {v['error']}" for k, v in out.items() if v["status"] == "failed"]
    return {"status": "failed" if failed else "ok", "error": "; ".join(failed), "providers": out}


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, (list, tuple)):
        return [_jsonable(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return _jsonable(asdict(obj))
    return str(obj)


# -- retrain / detect ------------------------------------------------------------------------------


def retrain(ctx: JobContext) -> dict[str, Any]:
    from .train import train

    res = train(ctx.store, ctx.settings, now=ctx.aware_now())
    return {"training": _jsonable(res)}


def detect(ctx: JobContext) -> dict[str, Any]:
    from .train import detect as detect_new

    res = detect_new(ctx.store, ctx.settings, now=ctx.aware_now())
    return {"detection": _jsonable(res)}


# -- check: findings -> alerts ---------------------------------------------------------------------


def _anomaly_alerts(ctx: JobContext) -> tuple[list[Any], list[int]]:
    from sqlalchemy import text

    from .alerts import Alert, severity_rank

    min_sev = ctx.settings.anomaly.min_severity_alert
    since = ctx.clock() - ANOMALY_ALERT_WINDOW_SECONDS
    with ctx.store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, dedup_key, scope_dim, scope_key, start_ts, end_ts, severity, impact_usd, explanation "
                "FROM anomalies WHERE alerted_at IS NULL AND status = 'open' AND end_ts >= :since "
                "ORDER BY start_ts"
            ),
            {"since": since},
        ).all()
    alerts, ids = [], []
    for r in rows:
        if severity_rank(r.severity) < severity_rank(min_sev):
            continue
        scope = "all usage" if r.scope_dim == "all" else f"{r.scope_dim} {r.scope_key}"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.start_ts))
        alerts.append(
            Alert(
                kind="anomaly",
                # Per severity: a finding that grew to a higher one is alerted again (train._insert_findings).
                dedup_key=f"anomaly:{r.dedup_key}:{r.severity}",
                severity=r.severity,
                title=f"Unusual spend on {scope} at {when} (+${r.impact_usd:,.2f})",
                body=r.explanation,
                data={
                    "anomaly_id": r.id,
                    "start_ts": r.start_ts,
                    "end_ts": r.end_ts,
                    "impact_usd": r.impact_usd,
                },
            )
        )
        ids.append(int(r.id))
    return alerts, ids


def _budget_alerts(ctx: JobContext) -> list[Any]:
    import importlib.util

    from .alerts import Alert

    if importlib.util.find_spec("openai_monitor.service.budgets") is None:
        return []
    from .budgets import check_budgets

    out = []
    for ev in check_budgets(ctx.store, ctx.settings, ctx.clock()):
        d = _jsonable(ev)
        key = d.get("dedup_key") or d.get("key") or json.dumps(d, sort_keys=True)
        out.append(
            Alert(
                kind="budget",
                dedup_key=f"budget:{key}",
                severity=str(d.get("severity") or "high"),
                title=str(
                    d.get("title") or d.get("message") or f"Budget {d.get('budget', '')} threshold crossed"
                ),
                body=str(d.get("body") or d.get("message") or ""),
                data=d,
            )
        )
    return out


def monthly_limit_usd(settings: Settings) -> float | None:
    """The configured monthly limit: ``limit_usd``, else the plan's limit from the bundled tier table."""
    if settings.limit_usd is not None:
        return float(settings.limit_usd)
    import importlib.resources

    from ..ml.tiers import monthly_limit, parse_tiers

    raw = json.loads(importlib.resources.files("openai_monitor").joinpath("data/tiers.json").read_text())
    overrides = getattr(settings, "tiers", None) or (settings.model_extra or {}).get("tiers")
    return monthly_limit(parse_tiers(raw, overrides), settings.plan, None)


def _forecast_alerts(ctx: JobContext) -> list[Any]:
    """The stored daily cost forecast says this month's spend will pass the monthly limit."""
    import importlib.util
    from datetime import datetime, timezone

    from .alerts import Alert

    if importlib.util.find_spec("openai_monitor.service.ml_read") is None:
        return []
    from . import ml_read
    from .spend import Db, period_bounds, spend_between

    limit = monthly_limit_usd(ctx.settings)
    if not limit:
        return []
    db = Db(ctx.store)
    fc = ml_read.latest_forecast(db, scope_dim="all", scope_key="", metric="cost", freq="d")
    if not fc or not fc.get("summary"):
        return []
    now_ts = ctx.clock()
    now = datetime.fromtimestamp(now_ts, timezone.utc)
    start, end = period_bounds("monthly", now, ctx.settings.timezone, ctx.settings.week_start)
    spent = spend_between(db, int(start.timestamp()), int(end.timestamp())).total_usd
    prob = ml_read.prob_exceed(fc["summary"], spent, limit, now=now_ts)
    hit = ml_read.limit_hit(fc["summary"], spent, limit, now_ts)
    threshold = float((ctx.settings.alerts or {}).get("forecast_probability", 0.5))
    if spent < limit and (prob is None or prob < threshold):
        return []
    prob = 1.0 if spent >= limit else float(prob or 0.0)
    when = (hit or {}).get("expected") or (hit or {}).get("date")
    month = start.strftime("%Y-%m")
    body = f"spent ${spent:,.2f} of ${limit:,.2f} this month; {prob:.0%} likely to pass the limit"
    if when:
        body += f", expected around {str(when)[:10]}"
    return [
        Alert(
            kind="forecast",
            dedup_key=f"forecast:limit:{month}",  # per month; reminded once per cooldown
            severity="critical" if spent >= limit else "high",
            title=(
                f"Monthly limit ${limit:,.2f} exceeded: ${spent:,.2f} spent"
                if spent >= limit
                else f"Forecast: monthly limit ${limit:,.2f} will be exceeded ({prob:.0%} likely)"
            ),
            body=body,
            data={"month": month, "spent_usd": spent, "limit_usd": limit, "probability": prob, "date": when},
        )
    ]


def _collection_alerts(ctx: JobContext) -> list[Any]:
    from sqlalchemy import text

    from .alerts import Alert

    daemon = ctx.settings.daemon
    after = int(getattr(daemon, "collect_fail_alert_after", 3) or 3)
    with ctx.store.engine.connect() as conn:
        runs = conn.execute(
            text(
                "SELECT id, status, error, started_at FROM job_runs WHERE job = 'collect' AND status != 'running' "
                "ORDER BY id DESC LIMIT :n"
            ),
            {"n": after},
        ).all()
    if len(runs) < after or any(r.status != "failed" for r in runs):
        return []
    with ctx.store.engine.connect() as conn:
        # The episode starts at the first failure after the last success: one alert per episode.
        first = conn.execute(
            text(
                "SELECT id, started_at FROM job_runs WHERE job = 'collect' AND status = 'failed' AND id > "
                "COALESCE((SELECT MAX(id) FROM job_runs WHERE job = 'collect' AND status = 'ok'), 0) "
                "ORDER BY id LIMIT 1"
            )
        ).one()
    return [
        Alert(
            kind="collection",
            dedup_key=f"collection_failing:{first.id}",
            severity="high",
            title=f"Collection failed {after} times in a row",
            body=f"last error: {runs[0].error}",
            data={"since": first.started_at, "runs": [r.id for r in runs]},
        )
    ]


def _stale_alerts(ctx: JobContext) -> list[Any]:
    from sqlalchemy import text

    from .alerts import Alert

    hours = float(ctx.settings.daemon.stale_hours)
    with ctx.store.engine.connect() as conn:
        newest = conn.execute(text("SELECT MAX(ts) FROM usage_records")).scalar()
    if newest is None:
        return []
    age = ctx.clock() - int(newest)
    if age < hours * 3600:
        return []
    last_collect = ctx.store.get_meta("last_collection_at")
    seen = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(newest)))
    body = f"newest usage record: {seen} ({age / 3600:.1f} h ago)"
    if last_collect:
        body += f"; last collection: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(int(last_collect)))}"
    return [
        Alert(
            kind="stale",
            dedup_key=f"stale:{newest}",  # the episode; while it lasts, reminded once per cooldown
            severity="medium",
            title=f"No new usage data for {age / 3600:.0f} hours",
            body=body,
            data={"newest_ts": int(newest), "last_collection_at": last_collect},
        )
    ]


def check(ctx: JobContext) -> dict[str, Any]:
    """Gather every finding and dispatch alerts. A failing finder is reported, the others still run."""
    from sqlalchemy import text

    from .alerts import dispatch

    findings: list[Any] = []
    errors: list[str] = []
    anomaly_ids: list[int] = []
    try:
        found, anomaly_ids = _anomaly_alerts(ctx)
        findings += found
    except Exception as e:  # the anomalies table is another feature's; a schema drift must not stop budgets
        errors.append(f"anomalies: {type(e).__name__}: {e}")
    for name, finder in (
        ("budgets", _budget_alerts),
        ("forecast", _forecast_alerts),
        ("collection", _collection_alerts),
        ("stale", _stale_alerts),
    ):
        try:
            findings += finder(ctx)
        except Exception as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")
            log.exception("check finder failed", extra={"finder": name})
    now = ctx.clock()
    outcomes = dispatch(ctx.store.engine, ctx.settings, findings, now=now)
    delivered = {
        o.alert.data.get("anomaly_id")
        for o in outcomes
        if o.alert.kind == "anomaly" and o.status in ("sent", "partial", "suppressed", "no_channel")
    }
    done_ids = [i for i in anomaly_ids if i in delivered]
    if done_ids:
        with ctx.store.engine.begin() as conn:
            conn.execute(
                text("UPDATE anomalies SET alerted_at = :t WHERE id = :id"),
                [{"t": now, "id": i} for i in done_ids],
            )
    result = {
        "findings": len(findings),
        "outcomes": [
            {"key": o.alert.dedup_key, "status": o.status, "channels": o.channels} for o in outcomes
        ],
    }
    if errors:
        result["errors"] = errors
        raise _JobFailed(f"check incomplete: {'; '.join(errors)}", result)
    return result


JOBS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "collect": collect,
    "detect": detect,
    "check": check,
    "retrain": retrain,
}


# -- running and recording -------------------------------------------------------------------------


def _start(store: Any, job: str, now: int) -> int:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO job_runs (job, started_at, status) VALUES (:j, :t, 'running') RETURNING id"
                ),
                {"j": job, "t": now},
            ).scalar_one()
        )


def _finish(store: Any, run_id: int, status: str, error: str | None, result: dict[str, Any]) -> None:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE job_runs SET finished_at = :t, status = :s, error = :e, result_json = :r WHERE id = :id"
            ),
            {
                "t": int(time.time()),
                "s": status,
                "e": error,
                "r": json.dumps(result, default=str),
                "id": run_id,
            },
        )


def run_job(name: str, ctx: JobContext) -> JobResult:
    """Run one job, record it in ``job_runs`` and log it. Never raises for a failing job."""
    if name not in JOBS:
        raise InputError(f"unknown job {name!r}; use one of {', '.join(JOB_NAMES)}")
    started = time.perf_counter()
    run_id = _start(ctx.store, name, ctx.clock())
    log.info("job started", extra={"job": name, "run_id": run_id})
    status, error, result = "ok", None, {}
    try:
        result = JOBS[name](ctx) or {}
    except MonitorError as e:
        status, error = "failed", str(e)
        result = getattr(e, "results", {}) or {}
        log.error("job failed", extra={"job": name, "run_id": run_id, "error": error})
    except Exception as e:
        status = "failed"
        error = f"{type(e).__name__}: {e}"
        log.error(
            "job crashed",
            extra={"job": name, "run_id": run_id, "error": error, "traceback": traceback.format_exc()},
        )
    if status == "ok" and ctx.stop.is_set():
        status = "stopped"
    seconds = time.perf_counter() - started
    _finish(ctx.store, run_id, status, error, result)
    log.info(
        "job finished", extra={"job": name, "run_id": run_id, "status": status, "seconds": round(seconds, 3)}
    )
    return JobResult(name, run_id, status, error, result, seconds)


def run_cycle(ctx: JobContext) -> list[JobResult]:
    """What the scheduled collect job does: collect, then detect and check on what was collected.

    detect and check run even when collect failed: a failed collection is itself something to alert on."""
    out = [run_job("collect", ctx)]
    for name in ("detect", "check"):
        if ctx.stop.is_set():
            break
        out.append(run_job(name, ctx))
    return out


def mark_interrupted(store: Any) -> int:
    """Runs left 'running' by a killed daemon become 'failed' (called when a daemon starts)."""
    from sqlalchemy import text

    with store.engine.begin() as conn:
        return conn.execute(
            text(
                "UPDATE job_runs SET status = 'failed', error = 'interrupted (daemon stopped)', "
                "finished_at = started_at WHERE status = 'running'"
            )
        ).rowcount
