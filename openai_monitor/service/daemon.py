"""The always-on scheduler: APScheduler 3 with its job store in the project's database.

Jobs (ids in ``apscheduler_jobs``): ``collect`` every ``[daemon] collect_minutes`` (then detect and check on
what it brought), ``retrain`` daily at ``[daemon] retrain_time`` in the configured time zone. Every job is
``coalesce=True``, ``max_instances=1`` and has no misfire grace limit: a laptop asleep through 03:00 runs
the retrain once on wake, not once per missed slot, and never twice at the same time. One worker thread
runs jobs one after the other, so SQLite sees a single writer.

A lock file in the home directory (``daemon.lock``, flock) allows one daemon per home. SIGTERM/SIGINT set
a stop flag that jobs look at between transaction groups; the scheduler then waits for the running job,
so a stop loses nothing. Logs are JSON lines in ``logs/daemon.log`` (rotated).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import home_dir, load_settings, logs_dir
from ..errors import ConfigError, MonitorError

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("openai_monitor.daemon")

LOCK_NAME = "daemon.lock"
LOG_NAME = "daemon.log"
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 5
SCHEDULED_JOBS = ("collect", "retrain")
# The daemon's runtime, read by ``scheduled`` (job args are pickled into the database; a threading.Event
# cannot be, so only the job name is stored there).
_RUNTIME: dict[str, Any] = {}


class DaemonRunning(MonitorError):
    """A second daemon tried to start on the same home directory."""

    exit_code = 3


# -- single-instance lock --------------------------------------------------------------------------


class InstanceLock:
    """An exclusive advisory lock on a file (flock on POSIX, msvcrt on Windows), holding the owner's pid.

    The operating system drops the lock when the process dies, so a crashed daemon never leaves a stale
    lock behind."""

    def __init__(self, path: Path):
        self.path = path
        self._fh: Any = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        if not _try_lock(fh):
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise DaemonRunning(
                f"another oaim daemon (pid {pid}) is already running on {self.path.parent}; "
                f"stop it first (`kill {pid}` or `systemctl --user stop openai-monitor`) "
                "or use another OAIM_HOME"
            )
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.seek(0)
            fh.truncate()
            fh.flush()
            _unlock(fh)
            fh.close()

    def holder(self) -> int | None:
        """The pid holding the lock, or None when no process holds it (never takes it for long)."""
        if not self.path.exists():
            return None
        with open(self.path, "a+", encoding="utf-8") as fh:
            if _try_lock(fh):
                _unlock(fh)
                return None
            fh.seek(0)
            text = fh.read().strip()
        return int(text) if text.isdigit() else -1


def _try_lock(fh: Any) -> bool:
    if os.name == "nt":  # pragma: no cover
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fh: Any) -> None:
    if os.name == "nt":  # pragma: no cover
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def lock_path() -> Path:
    return home_dir() / LOCK_NAME


# -- structured logs -------------------------------------------------------------------------------

_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's ``extra`` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD_ATTRS and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(foreground: bool) -> Path:
    """JSON lines to a rotating file in the home's logs directory (and plain lines to stderr in the
    foreground). Returns the log file path."""
    path = logs_dir() / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(JsonFormatter())
    handlers: list[logging.Handler] = [handler]
    if foreground:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(err)
    for name in ("openai_monitor", "apscheduler"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.INFO)
        for h in handlers:
            lg.addHandler(h)
    return path


# -- schedule ----------------------------------------------------------------------------------------


def parse_hhmm(value: str) -> tuple[int, int]:
    try:
        hh, mm = str(value).split(":")
        h, m = int(hh), int(mm)
        if not (0 <= h < 24 and 0 <= m < 60):
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"daemon.retrain_time {value!r} is not HH:MM; fix it with `oaim config set daemon.retrain_time 03:00`"
        ) from None
    return h, m


def job_triggers(settings: Settings) -> dict[str, Any]:
    """The trigger of each scheduled job from ``[daemon]``. ``collect_seconds`` / ``retrain_seconds``
    (intervals in seconds) override the minute/time settings: fast schedules for tests and demos."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    d = settings.daemon
    extra = d.model_extra or {}
    collect_s = float(extra.get("collect_seconds") or 0) or float(d.collect_minutes) * 60
    if collect_s <= 0:
        raise ConfigError(
            "daemon.collect_minutes must be positive; `oaim config set daemon.collect_minutes 15`"
        )
    triggers: dict[str, Any] = {"collect": IntervalTrigger(seconds=collect_s)}
    if extra.get("retrain_seconds"):
        triggers["retrain"] = IntervalTrigger(seconds=float(extra["retrain_seconds"]))
    else:
        h, m = parse_hhmm(d.retrain_time)
        triggers["retrain"] = CronTrigger(hour=h, minute=m, timezone=settings.timezone)
    return triggers


def build_scheduler(url: str, *, background: bool = True) -> Any:
    """A scheduler whose job store is the ``apscheduler_jobs`` table of the project's database."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    from ..store.db import make_engine

    cls = BackgroundScheduler if background else BlockingScheduler
    return cls(
        jobstores={"default": SQLAlchemyJobStore(engine=make_engine(url))},
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone="UTC",
    )


def sync_jobs(scheduler: Any, settings: Settings) -> dict[str, str]:
    """Add the scheduled jobs, keeping a stored job whose trigger is unchanged (so a run missed while the
    daemon was down still fires once on start). Returns job id -> 'kept' | 'added' | 'replaced'."""
    out = {}
    for job_id, trigger in job_triggers(settings).items():
        existing = scheduler.get_job(job_id)
        if existing is not None and str(existing.trigger) == str(trigger):
            out[job_id] = "kept"
            continue
        scheduler.add_job(
            "openai_monitor.service.daemon:scheduled",
            trigger=trigger,
            args=[job_id],
            id=job_id,
            name=job_id,
            replace_existing=True,
        )
        out[job_id] = "replaced" if existing is not None else "added"
    for job in scheduler.get_jobs():
        if job.id not in SCHEDULED_JOBS:
            scheduler.remove_job(job.id)  # jobs of an older version of this program
    return out


def scheduled(name: str) -> None:
    """Entry point of every scheduled run (referenced by name in the job store)."""
    from .jobs import JobContext, run_cycle, run_job

    url = _RUNTIME.get("url")
    if url is None:
        from ..config import default_database_url

        url = default_database_url()
    stop = _RUNTIME.get("stop") or threading.Event()
    try:
        settings = load_settings()
    except MonitorError as e:
        log.error("config invalid, job skipped", extra={"job": name, "error": str(e)})
        return
    ctx = JobContext(url=url, settings=settings, stop=stop)
    try:
        if name == "collect":
            run_cycle(ctx)
        else:
            run_job(name, ctx)
    finally:
        if ctx._store is not None:
            ctx._store.dispose()


def run_daemon(url: str, *, foreground: bool = True, ready: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    from ..store import Store
    from .jobs import mark_interrupted

    lock = InstanceLock(lock_path())
    lock.acquire()
    stop = threading.Event()
    scheduler = None
    try:
        log_file = setup_logging(foreground)
        settings = load_settings()
        job_triggers(settings)  # a bad schedule fails here, before anything starts
        store = Store(url)
        interrupted = mark_interrupted(store)
        store.set_meta("daemon_started_at", int(time.time()))
        store.dispose()
        _RUNTIME.update(url=url, stop=stop)
        scheduler = build_scheduler(url)
        scheduler.start(paused=True)
        changes = sync_jobs(scheduler, settings)
        scheduler.resume()

        def _on_signal(signum: int, _frame: Any) -> None:
            log.info("stop requested", extra={"signal": signal.Signals(signum).name})
            stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_signal)
            signal.signal(signal.SIGINT, _on_signal)
        log.info(
            "daemon started",
            extra={
                "pid": os.getpid(),
                "home": str(home_dir()),
                "jobs": changes,
                "next_runs": {j.id: str(j.next_run_time) for j in scheduler.get_jobs()},
                "interrupted_runs_marked": interrupted,
                "log_file": str(log_file),
            },
        )
        if ready is not None:
            ready.set()
        while not stop.wait(0.5):
            pass
        # Pause first: APScheduler's loop can still pick up a due job after shutdown() closed the
        # executor, which would advance its next run without running it. wait=True: the running job
        # sees the stop flag, ends its current transaction group and returns.
        scheduler.pause()
        scheduler.shutdown(wait=True)
        scheduler = None
        log.info("daemon stopped", extra={"pid": os.getpid()})
        return 0
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        _RUNTIME.clear()
        lock.release()


# -- status ------------------------------------------------------------------------------------------


def daemon_status(reader: Any) -> dict[str, Any]:
    """Running or not, and each job's next run, last run, last result and error (FastReader only)."""
    pid = InstanceLock(lock_path()).holder()
    jobs: dict[str, dict[str, Any]] = {
        name: {"next_run": None, "last_run": None} for name in ("collect", "detect", "check", "retrain")
    }
    if reader.table_exists("apscheduler_jobs"):
        for job_id, next_ts in reader.query("SELECT id, next_run_time FROM apscheduler_jobs"):
            jobs.setdefault(job_id, {"next_run": None, "last_run": None})
            jobs[job_id]["next_run"] = None if next_ts is None else int(next_ts)
    if reader.table_exists("job_runs"):
        rows = reader.query(
            "SELECT r.job, r.id, r.started_at, r.finished_at, r.status, r.error, r.result_json FROM job_runs r "
            "JOIN (SELECT job, MAX(id) AS id FROM job_runs GROUP BY job) m ON r.id = m.id"
        )
        for job, run_id, started, finished, status, error, result in rows:
            jobs.setdefault(job, {"next_run": None, "last_run": None})
            jobs[job]["last_run"] = {
                "id": run_id,
                "started_at": started,
                "finished_at": finished,
                "status": status,
                "error": error,
                "result": json.loads(result or "{}"),
            }
    return {
        "running": pid is not None,
        "pid": pid if pid and pid > 0 else None,
        "home": str(home_dir()),
        "log_file": str(logs_dir() / LOG_NAME),
        "jobs": jobs,
    }
