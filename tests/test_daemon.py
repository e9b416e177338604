"""The daemon: single-instance lock, persistent job store and misfires, job isolation, install, and an
end-to-end run (subprocess daemon -> collect -> retrain -> detect -> check -> webhook -> SIGTERM)."""

from __future__ import annotations

import csv
import json
import os
import plistlib
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from receivers import WebhookServer

from openai_monitor.service import daemon as d
from openai_monitor.service.daemon import DaemonRunning, InstanceLock

NO_DEFAULT_SOURCES = """
[sources.claude_code]
enabled = false
[sources.codex]
enabled = false
[sources.gemini]
enabled = false
"""


def _config(home: Path, text: str, top: str = "") -> None:
    """Write the config: ``top`` holds root keys (they must precede every [section])."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(top + NO_DEFAULT_SOURCES + text)


def _job_runs(url: str) -> list[tuple]:
    from openai_monitor.store.db import FastReader

    with FastReader(url) as r:
        return r.query("SELECT job, status, error FROM job_runs ORDER BY id")


# -- lock ------------------------------------------------------------------------------------------


def test_single_instance_lock(oaim_home: Path) -> None:
    first = InstanceLock(d.lock_path())
    first.acquire()
    try:
        assert InstanceLock(d.lock_path()).holder() == os.getpid()
        with pytest.raises(
            DaemonRunning, match=rf"another oaim daemon \(pid {os.getpid()}\) is already running"
        ):
            InstanceLock(d.lock_path()).acquire()
    finally:
        first.release()
    assert InstanceLock(d.lock_path()).holder() is None
    again = InstanceLock(d.lock_path())
    again.acquire()  # released locks can be taken again
    again.release()


def test_lock_of_a_killed_process_is_free(oaim_home: Path) -> None:
    code = (
        "import sys, time; from openai_monitor.service.daemon import InstanceLock, lock_path; "
        "lock = InstanceLock(lock_path()); lock.acquire(); print('locked', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        assert InstanceLock(d.lock_path()).holder() == p.pid
    finally:
        p.kill()
        p.wait()
    assert InstanceLock(d.lock_path()).holder() is None


# -- schedule: persistence and misfires ------------------------------------------------------------


def _wait(pred, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def _set_next_run(url: str, scheduler, job_id: str, when) -> None:
    """Move a stored job's next run (what a sleeping laptop looks like to the job store)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    from openai_monitor.store.db import make_engine

    js = SQLAlchemyJobStore(engine=make_engine(url))
    js.start(scheduler, "default")
    job = js.lookup_job(job_id)
    job.next_run_time = when
    js.update_job(job)
    js.shutdown()


def test_missed_runs_fire_once_and_a_crashing_job_does_not_stop_the_others(
    oaim_home: Path, db_url: str
) -> None:
    import datetime as dt

    from openai_monitor.config import load_settings
    from openai_monitor.store import Store

    _config(oaim_home, '[daemon]\ncollect_minutes = 60\nretrain_time = "03:00"\n')
    Store(db_url).dispose()
    settings = load_settings()

    # A daemon that ran before: its jobs are in the database; then the machine slept for 5 periods.
    s1 = d.build_scheduler(db_url)
    s1.start(paused=True)
    assert d.sync_jobs(s1, settings) == {"collect": "added", "retrain": "added"}
    s1.shutdown(wait=True)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=5)
    _set_next_run(db_url, s1, "collect", past)
    _set_next_run(db_url, s1, "retrain", past - dt.timedelta(days=3))

    stop = threading.Event()
    d._RUNTIME.update(url=db_url, stop=stop)
    s2 = d.build_scheduler(db_url)
    try:
        s2.start(paused=True)
        assert d.sync_jobs(s2, settings) == {"collect": "kept", "retrain": "kept"}
        s2.resume()
        # collect chains detect and check; retrain has no usage to train on and fails.
        assert _wait(lambda: len(_job_runs(db_url)) >= 4, 30)
        time.sleep(1.0)  # would a second catch-up run follow? (it must not)
        runs = _job_runs(db_url)
        nxt = {j.id: j.next_run_time for j in s2.get_jobs()}
    finally:
        s2.shutdown(wait=True)
        d._RUNTIME.clear()
    by_job = {}
    for job, status, error in runs:
        by_job.setdefault(job, []).append((status, error))
    assert sorted(by_job) == ["check", "collect", "detect", "retrain"]
    assert all(len(v) == 1 for v in by_job.values()), runs  # once, not once per missed slot
    assert by_job["collect"] == [("ok", None)]
    assert by_job["check"] == [("ok", None)]
    assert by_job["retrain"][0][0] == "failed"
    assert "no usage to train on" in by_job["retrain"][0][1]
    now = dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(minutes=59) < nxt["collect"] - now <= dt.timedelta(hours=1)
    assert nxt["retrain"].astimezone(dt.timezone.utc).strftime("%H:%M") == "03:00"
    assert now < nxt["retrain"] <= now + dt.timedelta(days=1)


def test_changed_schedule_replaces_the_stored_job(oaim_home: Path, db_url: str) -> None:
    from openai_monitor.config import load_settings
    from openai_monitor.store import Store

    Store(db_url).dispose()
    _config(oaim_home, "[daemon]\ncollect_minutes = 15\n")
    s = d.build_scheduler(db_url)
    s.start(paused=True)
    try:
        d.sync_jobs(s, load_settings())
        _config(oaim_home, '[daemon]\ncollect_minutes = 5\nretrain_time = "04:30"\n')
        assert d.sync_jobs(s, load_settings()) == {"collect": "replaced", "retrain": "replaced"}
        assert str(s.get_job("collect").trigger) == "interval[0:05:00]"
        assert "hour='4', minute='30'" in str(s.get_job("retrain").trigger)
    finally:
        s.shutdown(wait=False)


def test_bad_retrain_time_names_the_fix(oaim_home: Path) -> None:
    from openai_monitor.config import Settings
    from openai_monitor.errors import ConfigError

    with pytest.raises(ConfigError, match="oaim config set daemon.retrain_time 03:00"):
        d.job_triggers(Settings(daemon={"retrain_time": "25:00"}))


def test_run_job_cli_records_failures(run_cli, oaim_home: Path, tmp_path: Path, db_url: str) -> None:
    _config(oaim_home, f'[sources.csv]\nenabled = true\npaths = ["{tmp_path / "missing.csv"}"]\n')
    r = run_cli("daemon", "run-job", "collect")
    assert r.exit_code == 1
    assert "collect: failed" in r.stdout and "missing.csv does not exist" in r.stdout
    r = run_cli("daemon", "run-job", "nope")
    assert r.exit_code == 2 and "unknown job 'nope'" in r.stderr
    r = run_cli("daemon", "status", "--json")
    st = json.loads(r.stdout)
    assert st["running"] is False
    assert st["jobs"]["collect"]["last_run"]["status"] == "failed"


def test_collection_failing_repeatedly_alerts_once(run_cli, oaim_home: Path, tmp_path: Path) -> None:
    with WebhookServer() as srv:
        _config(
            oaim_home,
            f'[sources.csv]\nenabled = true\npaths = ["{tmp_path / "gone.csv"}"]\n'
            f'[daemon]\ncollect_fail_alert_after = 2\n[alerts.hook]\ntype = "webhook"\nurl = "{srv.url()}"\n',
        )
        for _ in range(3):
            run_cli("daemon", "run-job", "cycle")
    kinds = [r["body"]["kind"] for r in srv.requests]
    assert kinds == ["collection"]  # after the 2nd failure; the 3rd is the same episode
    assert "gone.csv does not exist" in srv.requests[0]["body"]["body"]


def test_budget_thresholds_alert_once_each(run_cli, oaim_home: Path, tmp_path: Path, db_url: str) -> None:
    from openai_monitor.service.budgets import add_budget
    from openai_monitor.service.spend import Db
    from openai_monitor.store import Store

    usage = tmp_path / "spend.csv"
    ts = int(time.time()) - 60
    usage.write_text(
        f"timestamp,model,user,input_tokens,output_tokens,cost_usd\n{ts},gpt-4o,alice,1000,100,0.9\n"
    )
    with WebhookServer() as srv:
        _config(
            oaim_home,
            f'[sources.csv]\nenabled = true\npaths = ["{usage}"]\n'
            f'[alerts.hook]\ntype = "webhook"\nurl = "{srv.url()}"\n',
        )
        assert run_cli("daemon", "run-job", "collect").exit_code == 0
        add_budget(Db(Store(db_url)), 1.0, "monthly")
        assert run_cli("daemon", "run-job", "check").exit_code == 0
        assert run_cli("daemon", "run-job", "check").exit_code == 0
    budget = [r["body"] for r in srv.requests if r["body"]["kind"] == "budget"]
    assert [b["data"]["threshold_pct"] for b in budget] == [50, 80]  # $0.90 of $1.00; each level once
    assert budget[0]["title"] == "monthly budget for all usage passed 50%: $0.90 of $1.00"


# -- install ---------------------------------------------------------------------------------------


def test_install_and_uninstall_systemd_unit(run_cli, oaim_home: Path) -> None:
    unit = Path.home() / ".config" / "systemd" / "user" / "openai-monitor.service"
    assert str(unit).startswith(str(oaim_home.parent))  # HOME is the test's tmp dir
    r = run_cli("daemon", "install")
    if not sys.platform.startswith("linux"):
        pytest.fail("this test covers the Linux unit")
    assert r.exit_code == 0, r.stderr
    text = unit.read_text()
    assert f"ExecStart={sys.executable} -m openai_monitor daemon --foreground" in text
    assert f'Environment="OAIM_HOME={oaim_home}"' in text
    assert "WantedBy=default.target" in text
    assert f"wrote {unit}" in r.stdout
    assert "systemctl --user daemon-reload && systemctl --user enable --now openai-monitor" in r.stdout
    r = run_cli("daemon", "uninstall")
    assert r.exit_code == 0 and f"removed {unit}" in r.stdout
    assert not unit.exists()
    r = run_cli("daemon", "uninstall")
    assert "nothing to remove" in r.stdout


def test_launchd_agent_is_a_valid_plist(oaim_home: Path) -> None:
    from openai_monitor.service.install import install, uninstall

    res = install(platform="darwin")
    assert res.path == Path.home() / "Library" / "LaunchAgents" / "com.openai-monitor.daemon.plist"
    plist = plistlib.loads(res.path.read_bytes())
    assert plist["ProgramArguments"] == [sys.executable, "-m", "openai_monitor", "daemon", "--foreground"]
    assert plist["EnvironmentVariables"] == {"OAIM_HOME": str(oaim_home)}
    assert res.start_hint == f"launchctl load -w {res.path}"
    assert uninstall(platform="darwin") == res.path and not res.path.exists()


# -- end to end ------------------------------------------------------------------------------------


def _write_usage(path: Path, now: int) -> tuple[int, int]:
    """21 days of steady hourly use, then an incident in the last complete hour (a new user, big calls)."""
    hour = now // 3600 * 3600
    rng = random.Random(7)
    rows = []
    for h in range(21 * 24, 1, -1):
        ts = hour - h * 3600
        for i in range(3 if 8 <= (ts // 3600) % 24 < 20 else 1):
            rows.append(
                {
                    "timestamp": ts + 60 * i + rng.randint(0, 50),
                    "model": "gpt-4o",
                    "user": "alice",
                    "input_tokens": rng.randint(900, 1100),
                    "output_tokens": rng.randint(180, 220),
                }
            )
    for i in range(60):
        rows.append(
            {
                "timestamp": hour - 3600 + 30 * i,
                "model": "gpt-4o",
                "user": "mallory",
                "input_tokens": 50000,
                "output_tokens": 8000,
            }
        )
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return len(rows), hour - 3600


def test_daemon_end_to_end(oaim_home: Path, tmp_path: Path, db_url: str) -> None:
    from openai_monitor.store.db import FastReader

    usage = tmp_path / "usage.csv"
    n_rows, incident_ts = _write_usage(usage, int(time.time()))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "openai_monitor", "daemon", "--foreground"]
    with WebhookServer() as srv:
        _config(
            oaim_home,
            f'[sources.csv]\nenabled = true\npaths = ["{usage}"]\n'
            "[daemon]\ncollect_seconds = 2\nretrain_seconds = 3\n"
            f'[alerts]\nmin_severity = "medium"\n[alerts.hook]\ntype = "webhook"\nurl = "{srv.url()}"\n',
            top="limit_usd = 5.0\n",
        )
        log_err = open(tmp_path / "daemon.stderr", "w")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_err)
        try:
            assert _wait(lambda: InstanceLock(d.lock_path()).holder() == proc.pid, 20), "daemon did not start"
            second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
            assert second.returncode == 3
            assert f"another oaim daemon (pid {proc.pid}) is already running" in second.stderr
            assert "Traceback" not in second.stderr

            kinds = lambda: {r["body"]["kind"] for r in srv.requests}  # noqa: E731
            got = _wait(lambda: {"anomaly", "forecast"} <= kinds(), 45, 0.25)
            time.sleep(2.5)  # at least one more cycle: nothing may be sent twice
            assert got, (
                f"no anomaly and limit alerts; daemon stderr:\n{(tmp_path / 'daemon.stderr').read_text()[-3000:]}"
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log_err.close()
    assert InstanceLock(d.lock_path()).holder() is None  # lock released

    anomaly = [r["body"] for r in srv.requests if r["body"]["kind"] == "anomaly"]
    assert all(a["severity"] in ("medium", "high", "critical") for a in anomaly)
    assert any(a["data"]["start_ts"] == incident_ts for a in anomaly)
    keys = [a["dedup_key"] for a in anomaly]
    assert len(keys) == len(set(keys))  # each finding sent once, however many cycles ran
    [limit] = [r["body"] for r in srv.requests if r["body"]["kind"] == "forecast"]  # once, not per cycle
    assert limit["data"]["limit_usd"] == 5.0 and limit["data"]["spent_usd"] > 5.0
    assert limit["title"].startswith("Monthly limit $5.00 exceeded")

    with FastReader(db_url) as r:
        assert r.query("SELECT COUNT(*) FROM usage_records")[0][0] == n_rows  # nothing lost, nothing doubled
        runs = r.query("SELECT job, status FROM job_runs")
        sent = r.query("SELECT dedup_key, status FROM alerts WHERE kind = 'anomaly'")
        alerted = r.query("SELECT COUNT(*) FROM anomalies WHERE alerted_at IS NOT NULL")[0][0]
        stored_jobs = {row[0] for row in r.query("SELECT id FROM apscheduler_jobs")}
    assert "running" not in {s for _, s in runs}
    assert {j for j, s in runs if s == "ok"} >= {"collect", "detect", "check", "retrain"}
    assert sorted(k for k, _ in sent) == sorted(keys) and {s for _, s in sent} == {"sent"}
    assert alerted == len(keys)
    assert stored_jobs == {"collect", "retrain"}  # the schedule survives in the database

    lines = [json.loads(x) for x in (oaim_home / "logs" / "daemon.log").read_text().splitlines()]
    msgs = [x["msg"] for x in lines]
    assert "daemon started" in msgs and msgs[-1] == "daemon stopped"
    assert any(x.get("job") == "retrain" and x.get("status") == "ok" for x in lines)


def test_stale_data_alerts_once_per_episode(oaim_home: Path, db_url: str) -> None:
    from openai_monitor.config import load_settings
    from openai_monitor.domain import UsageRecord
    from openai_monitor.service.jobs import JobContext, run_job
    from openai_monitor.store import Store

    t0 = 1_800_000_000
    store = Store(db_url)
    store.ingest([UsageRecord(ts=t0, provider="openai", model="gpt-4o", dedup_key="r1", input_tokens=10)])
    with WebhookServer() as srv:
        _config(
            oaim_home, f'[daemon]\nstale_hours = 24\n[alerts.hook]\ntype = "webhook"\nurl = "{srv.url()}"\n'
        )
        settings = load_settings()
        for now in (t0 + 23 * 3600, t0 + 25 * 3600, t0 + 30 * 3600):
            assert run_job("check", JobContext(db_url, settings, now=now, _store=store)).status == "ok"
        store.ingest([UsageRecord(ts=t0 + 40 * 3600, provider="openai", model="gpt-4o", dedup_key="r2")])
        run_job("check", JobContext(db_url, settings, now=t0 + 65 * 3600, _store=store))
    stale = [r["body"] for r in srv.requests if r["body"]["kind"] == "stale"]
    assert [s["data"]["newest_ts"] for s in stale] == [t0, t0 + 40 * 3600]  # one per episode
    assert stale[0]["title"] == "No new usage data for 25 hours"


def test_a_growing_finding_is_alerted_again_only_when_its_severity_rises(
    oaim_home: Path, db_url: str
) -> None:
    """An incident detected while it goes on grows one finding (train._insert_findings): the check job
    alerts it once, again when it grows to a higher severity, and not when it grows at the same one."""
    from openai_monitor.config import load_settings
    from openai_monitor.ml.anomaly import Finding
    from openai_monitor.service.jobs import JobContext, run_job
    from openai_monitor.service.train import _insert_findings
    from openai_monitor.store import Store

    t0 = 1_800_000_000 // 3600 * 3600
    store = Store(db_url)

    def grow(hours: int, severity: str, impact: float) -> tuple[list[int], list[int]]:
        f = Finding("user:zed", t0, t0 + hours * 3600, severity, 0.7, impact, "loop", {}, "loop")
        return _insert_findings(store, [("user", "zed", f, [])], t0)

    with WebhookServer() as srv:
        _config(oaim_home, f'[alerts.hook]\ntype = "webhook"\nurl = "{srv.url()}"\n')
        settings = load_settings()
        (fid,), _ = grow(1, "medium", 5.0)
        for hours, severity, impact in (
            (None, "", 0.0),
            (2, "medium", 8.0),
            (3, "high", 40.0),
            (4, "high", 50.0),
        ):
            if hours is not None:
                assert grow(hours, severity, impact) == ([], [fid])
            now = t0 + (hours or 1) * 3600 + 60
            assert run_job("check", JobContext(db_url, settings, now=now, _store=store)).status == "ok"
    sent = [r["body"] for r in srv.requests if r["body"]["kind"] == "anomaly"]
    assert [(a["severity"], a["data"]["impact_usd"]) for a in sent] == [("medium", 5.0), ("high", 40.0)]
    assert len({a["dedup_key"] for a in sent}) == 2


def test_background_start_status_and_sigterm(run_cli, oaim_home: Path) -> None:
    _config(oaim_home, "[daemon]\ncollect_minutes = 60\n")
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, "-m", "openai_monitor", "daemon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    m = re.match(r"daemon started \(pid (\d+)\)", r.stdout)
    assert m, r.stdout
    pid = int(m.group(1))
    try:
        st = json.loads(run_cli("daemon", "status", "--json").stdout)
        assert st["running"] is True and st["pid"] == pid
        assert _wait(
            lambda: json.loads(run_cli("daemon", "status", "--json").stdout)["jobs"]["collect"]["next_run"],
            10,
        )
        again = subprocess.run(
            [sys.executable, "-m", "openai_monitor", "daemon"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert again.returncode == 1 and f"already running (pid {pid})" in again.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    assert _wait(lambda: InstanceLock(d.lock_path()).holder() is None, 20)
    assert json.loads(run_cli("daemon", "status", "--json").stdout)["running"] is False
