"""Always-on service commands: ``oaim daemon ...`` and ``oaim alerts ...``."""

from __future__ import annotations

import sys
import time

import typer

from ..errors import InputError, MonitorError
from .common import console, print_json, state

daemon_app = typer.Typer(
    help="The always-on scheduler: collect, detect, check and alert, retrain daily.",
    invoke_without_command=True,
)
alerts_app = typer.Typer(help="Alert channels and history.", no_args_is_help=True)

START_WAIT_SECONDS = 10.0


def register(app: typer.Typer) -> None:
    app.add_typer(daemon_app, name="daemon")
    app.add_typer(alerts_app, name="alerts")


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(ts)))


@daemon_app.callback()
def daemon_main(
    ctx: typer.Context,
    foreground: bool = typer.Option(
        False, "--foreground", "-f", help="Run in this process (for systemd, launchd, Docker) until SIGTERM."
    ),
) -> None:
    """Start the daemon (in the background unless --foreground)."""
    if ctx.invoked_subcommand is not None:
        return
    st = state(ctx)
    if foreground:
        from ..service.daemon import run_daemon

        st.settings  # noqa: B018  (a broken config fails here with its one-line message, before the lock)
        raise typer.Exit(run_daemon(st.url, foreground=True))
    _start_background(st.url, st.db_url)


def _start_background(url: str, db_option: str | None) -> None:
    import subprocess

    from ..config import logs_dir
    from ..service.daemon import InstanceLock, lock_path

    pid = InstanceLock(lock_path()).holder()
    if pid is not None:
        raise MonitorError(f"the daemon is already running (pid {pid}); see `oaim daemon status`")
    logs_dir().mkdir(parents=True, exist_ok=True)
    out_path = logs_dir() / "daemon.out"
    cmd = [sys.executable, "-m", "openai_monitor"]
    if db_option:
        cmd += ["--db", db_option]
    cmd += ["daemon", "--foreground"]
    with open(out_path, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + START_WAIT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = out_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
            raise MonitorError(
                f"the daemon exited at start: {' '.join(tail) or proc.returncode}; see {out_path}"
            )
        if InstanceLock(lock_path()).holder() == proc.pid:
            typer.echo(f"daemon started (pid {proc.pid}); logs: {logs_dir() / 'daemon.log'}")
            return
        time.sleep(0.1)
    typer.echo(f"daemon starting (pid {proc.pid}); check `oaim daemon status` and {out_path}")


@daemon_app.command("status")
def daemon_status_cmd(ctx: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """Running or not; each job's next run, last run, last result and error."""
    from ..service.daemon import daemon_status

    with state(ctx).reader() as reader:
        status = daemon_status(reader)
    if json_out:
        print_json(status)
        return
    c = console()
    head = f"daemon: running (pid {status['pid']})" if status["running"] else "daemon: not running"
    c.print(head, markup=False)
    from rich.table import Table

    t = Table(show_edge=False, pad_edge=False)
    for col in ("job", "next run", "last run", "status", "error"):
        t.add_column(col)
    for job, info in status["jobs"].items():
        last = info["last_run"] or {}
        t.add_row(
            job,
            _when(info["next_run"])
            if info["next_run"]
            else ("after collect" if job in ("detect", "check") else "-"),
            _when(last.get("started_at")),
            last.get("status") or "never run",
            (last.get("error") or "")[:120],
        )
    c.print(t)
    c.print(f"log: {status['log_file']}", markup=False)


@daemon_app.command("install")
def daemon_install_cmd() -> None:
    """Write a systemd user unit (Linux) or launchd agent (macOS) that runs the daemon."""
    from ..service.install import install

    res = install()
    typer.echo(f"wrote {res.path}:\n")
    typer.echo(res.content)
    typer.echo(f"start it with:  {res.start_hint}")
    typer.echo(f"stop it with:   {res.stop_hint}")


@daemon_app.command("uninstall")
def daemon_uninstall_cmd() -> None:
    """Remove the unit/agent written by `oaim daemon install`."""
    from ..service.install import service_path, uninstall

    removed = uninstall()
    if removed is None:
        typer.echo(f"nothing to remove: {service_path()} does not exist")
        return
    hint = (
        "systemctl --user disable --now openai-monitor; systemctl --user daemon-reload"
        if sys.platform.startswith("linux")
        else f"launchctl unload -w {removed}"
    )
    typer.echo(f"removed {removed}; if it was running, stop it with: {hint}")


@daemon_app.command("run-job")
def daemon_run_job_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="collect | detect | check | retrain | cycle (collect+detect+check)"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Run one job now, recorded like a scheduled run."""
    from ..service.jobs import JOB_NAMES, JobContext, run_cycle, run_job

    if name not in (*JOB_NAMES, "cycle"):
        raise InputError(f"unknown job {name!r}; use one of {', '.join(JOB_NAMES)}, cycle")
    st = state(ctx)
    jctx = JobContext(url=st.url, settings=st.settings, _store=st.store)
    results = run_cycle(jctx) if name == "cycle" else [run_job(name, jctx)]
    if json_out:
        print_json([r.as_dict() for r in results])
    else:
        for r in results:
            line = f"{r.job}: {r.status} ({r.seconds:.2f} s)"
            if r.error:
                line += f": {r.error}"
            typer.echo(line)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


# -- alerts ------------------------------------------------------------------------------------------


@alerts_app.command("test")
def alerts_test_cmd(
    ctx: typer.Context, channel: str = typer.Argument(..., help="A section name of [alerts].")
) -> None:
    """Send a test message through one configured channel."""
    from ..service.alerts import channels_from_settings, sample_alert

    chans = channels_from_settings(state(ctx).settings)
    if channel not in chans:
        known = ", ".join(chans) or "none configured"
        raise InputError(
            f"no alert channel {channel!r} (configured: {known}); add one, e.g. "
            f"`oaim config set alerts.{channel}.type slack` and `oaim config set alerts.{channel}.url URL`"
        )
    chans[channel].send(sample_alert())
    typer.echo(f"test alert sent through {channel} ({chans[channel].type})")


@alerts_app.command("list")
def alerts_list_cmd(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", "-n", help="How many, newest first."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Alert history: what was sent, to which channels, and how often it recurred."""
    from ..service.alerts import list_alerts

    with state(ctx).reader() as reader:
        rows = list_alerts(reader, limit)
    if json_out:
        print_json(rows)
        return
    if not rows:
        typer.echo("no alerts yet")
        return
    from rich.table import Table

    t = Table(show_edge=False, pad_edge=False)
    for col in ("when", "severity", "kind", "status", "repeats", "title"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            _when(r["created_at"]), r["severity"], r["kind"], r["status"], str(r["repeats"]), r["title"]
        )
    console().print(t)
