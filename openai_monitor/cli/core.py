"""Core commands: import, log, config, pricing/models, reset, doctor."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..errors import InputError
from .common import console, print_json, state, write_csv

import_app = typer.Typer(help="Import usage from CLI logs and CSV/JSONL files.", no_args_is_help=True)
config_app = typer.Typer(help="Show or change the configuration file.", no_args_is_help=True)
pricing_app = typer.Typer(
    help="Model prices (USD per 1M tokens, dated, with a source).", no_args_is_help=True
)

MAX_ERRORS_SHOWN = 5


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.command("log")(log_cmd)
    app.add_typer(config_app, name="config")
    app.add_typer(pricing_app, name="pricing")
    app.command("models")(models_cmd)
    app.command("reset")(reset_cmd)
    app.command("doctor")(doctor_cmd)
    app.command("demo")(demo_cmd)


# -- import ------------------------------------------------------------------------------------------

# An import with more than this to read shows a progress bar.
BAR_BYTES = 8 * 1024 * 1024


def _run_import(
    ctx: typer.Context, source: str, path: Path | None, options: dict[str, Any], full: bool, json_out: bool
) -> None:
    from ..service.ingest import _stat, run_import
    from ..service.pricing import make_pricer
    from ..sources import get_adapter

    st = state(ctx)
    adapter = get_adapter(source)
    files = adapter.discover(path)
    store = st.store
    # Picklable: lets a large import parse and price in a second process while this one writes; the
    # import builds its Pricer from it only when there is something new to read, from the config
    # file's [prices] alone.
    factory = make_pricer
    total = sum(_stat(f).st_size for f in files)
    show_bar = not json_out and total > BAR_BYTES
    if show_bar:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        # No refresh thread (auto_refresh=False): the import forks its parsing processes only from a
        # single-threaded process, so a bar drawing from its own thread made every interactive import
        # read in one process (210 MB of Claude logs: 2.1 s instead of 0.9 s). It is redrawn from
        # the progress callback instead, at most ten times a second.
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console(stderr=True),
            transient=True,
            auto_refresh=False,
        ) as bar:
            task = bar.add_task(f"importing {source}", total=total)
            bar.refresh()
            result = run_import(
                store,
                adapter,
                files=files,
                options=options,
                pricer_factory=factory,
                full=full,
                on_progress=_redraw(bar, task),
            )
    else:
        result = run_import(store, adapter, files=files, options=options, pricer_factory=factory, full=full)
    unpriced = store.unpriced_models()
    if json_out:
        out = result.as_dict()
        out["unpriced_models"] = [{"provider": p, "model": m, "records": n} for p, m, n in unpriced]
        print_json(out)
        return
    c = console()
    c.print(
        f"{source}: {result.files_read} file(s) read, {result.files_unchanged} unchanged; "
        f"{result.records} record(s) found, {result.inserted} new, {result.duplicates} already stored "
        f"({result.seconds:.2f} s)"
    )
    _print_skipped(result.report)
    _print_unpriced(unpriced)


def _redraw(bar: Any, task: Any, every: float = 0.1) -> Callable[[int, int], None]:
    """A progress callback that moves BAR's TASK and redraws it at most once per EVERY seconds."""
    last = 0.0

    def on_progress(done: int, _total: int) -> None:
        nonlocal last
        now = time.monotonic()
        draw = now - last >= every
        if draw:
            last = now
        bar.update(task, completed=done, refresh=draw)

    return on_progress


def _print_skipped(report: Any) -> None:
    if not report.skipped:
        return
    # typer.echo, not rich: file:line references must never be wrapped or shortened.
    typer.echo(f"{report.skipped} malformed line(s) skipped:", err=True)
    for e in report.errors[:MAX_ERRORS_SHOWN]:
        typer.echo(f"  {e}", err=True)
    if report.skipped > MAX_ERRORS_SHOWN:
        typer.echo(f"  ... and {report.skipped - MAX_ERRORS_SHOWN} more", err=True)


def _print_unpriced(unpriced: list[tuple[str, str, int]]) -> None:
    if not unpriced:
        return
    n = sum(r[2] for r in unpriced)
    names = ", ".join(m for _p, m, _n in unpriced[:5])
    console(stderr=True).print(
        f"{n} record(s) of {len(unpriced)} unknown model(s) not priced ({names}): "
        "add a price with `oaim pricing set MODEL --input X --output Y`",
        markup=False,
    )


def _parse_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--map {item!r}: expected COLUMN=FIELD, e.g. --map ts=timestamp")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@import_app.command("csv")
def import_csv(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV or JSONL file (or a directory of them)."),
    fmt: str = typer.Option("generic", "--format", help="generic | burstgpt"),
    mapping: list[str] = typer.Option([], "--map", help="COLUMN=FIELD, repeatable."),
    start: str | None = typer.Option(
        None,
        "--start",
        help="Start date of a trace whose timestamps are offsets from its start (BurstGPT, ...).",
    ),
    time_unit: str | None = typer.Option(
        None, "--time-unit", help="Unit of those offsets in a generic file: s (default) or ms."
    ),
    provider: str | None = typer.Option(None, "--provider", help="Default provider for rows without one."),
    model: str | None = typer.Option(
        None, "--model", help="Default model for rows without one (or a file without a model column)."
    ),
    user: str | None = typer.Option(None, "--user", help="Default user for rows without one."),
    project: str | None = typer.Option(None, "--project", help="Default project for rows without one."),
    full: bool = typer.Option(False, "--full", help="Re-read files even if unchanged."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Import a generic CSV/JSONL usage file or a BurstGPT trace."""
    from ..sources.csv_generic import check_options

    options: dict[str, Any] = {"format": fmt, "map": _parse_map(mapping)}
    for k, v in (
        ("start", start),
        ("time_unit", time_unit),
        ("provider", provider),
        ("model", model),
        ("user", user),
        ("project", project),
    ):
        if v is not None:
            options[k] = v
    check_options(options)
    _run_import(ctx, "csv", file, options, full, json_out)


def _cli_log_command(source: str, tool: str) -> Any:
    def cmd(
        ctx: typer.Context,
        path: Path | None = typer.Option(
            None, "--path", help=f"{tool} data directory or file (default: its usual place)."
        ),
        full: bool = typer.Option(False, "--full", help="Re-read files even if unchanged."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        _run_import(ctx, source, path, {}, full, json_out)

    cmd.__doc__ = f"Import {tool} logs (incremental: only what is new since the last import)."
    return cmd


import_app.command("claude-code")(_cli_log_command("claude-code", "Claude Code"))
import_app.command("codex")(_cli_log_command("codex", "Codex CLI"))
import_app.command("gemini")(_cli_log_command("gemini", "Gemini CLI"))


# -- manual record -----------------------------------------------------------------------------------


def log_cmd(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="Model name, e.g. gpt-4o."),
    input_tokens: int = typer.Option(..., "--input", help="Input tokens (including cached)."),
    output_tokens: int = typer.Option(..., "--output", help="Output tokens (including reasoning)."),
    cached: int = typer.Option(0, "--cached", help="Cached input tokens (part of --input)."),
    reasoning: int = typer.Option(0, "--reasoning", help="Reasoning tokens (part of --output)."),
    provider: str | None = typer.Option(None, "--provider"),
    user: str = typer.Option("", "--user"),
    project: str = typer.Option("", "--project"),
    timestamp: str | None = typer.Option(
        None, "--timestamp", help="ISO 8601 or Unix seconds (default: now)."
    ),
    cost: float | None = typer.Option(None, "--cost", help="Billed cost in USD, if known."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Record one call by hand."""
    import uuid

    from ..domain import UsageRecord
    from ..pricing.engine import infer_provider
    from ..service.ingest import ingest_records
    from ..service.pricing import make_pricer
    from ..timeutil import parse_timestamp

    st = state(ctx)
    ts = parse_timestamp(timestamp) if timestamp else int(time.time())
    rec = UsageRecord(
        ts=ts,
        provider=provider or infer_provider(model),
        model=model,
        dedup_key=f"manual:{uuid.uuid4().hex}",
        source="manual",
        user=user,
        project=project,
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        cost_usd=cost,
        cost_reported=cost is not None,
    )
    reason = rec.validate()
    if reason:
        raise InputError(f"cannot log this call: {reason}; check --input/--output/--cached/--reasoning")
    ingest_records(st.store, [rec], pricer=make_pricer(st.settings))
    stored = rec.cost_usd
    if json_out:
        print_json(
            {
                "ts": ts,
                "provider": rec.provider,
                "model": model,
                "cost_usd": stored,
                "priced": stored is not None,
            }
        )
        return
    if stored is None:
        console().print(
            f"logged 1 call of {model}: no price known; add one with `oaim pricing set {model} --input X --output Y`",
            markup=False,
        )
    else:
        console().print(
            f"logged 1 call of {model}: ${stored:.6f} ({'billed' if cost is not None else 'estimated'})"
        )


# -- config ------------------------------------------------------------------------------------------


@config_app.command("show")
def config_show(ctx: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """Show the effective configuration (file values over defaults)."""
    data = state(ctx).settings.model_dump(mode="json")
    if json_out:
        print_json(data)
    else:
        import tomli_w

        typer.echo(tomli_w.dumps({k: v for k, v in data.items() if v is not None}).rstrip())


@config_app.command("path")
def config_path_cmd() -> None:
    """Print the configuration file path."""
    from ..config import config_path

    typer.echo(str(config_path()))


@config_app.command("set")
def config_set(ctx: typer.Context, key: str = typer.Argument(...), value: str = typer.Argument(...)) -> None:
    """Set KEY (dotted, e.g. daemon.retrain_time) to VALUE (TOML syntax or a plain string)."""
    from ..config import config_path, set_value

    set_value(key, value)
    state(ctx)._settings = None
    typer.echo(f"{key} = {value} written to {config_path()}")


# -- pricing -----------------------------------------------------------------------------------------


def _price_rows(ctx: typer.Context, provider: str | None) -> list[dict[str, Any]]:
    from ..service.pricing import make_pricer

    pricer = make_pricer(state(ctx).settings)
    rows = pricer.list_models(int(time.time()), providers=[provider] if provider else None)
    return [r for r in rows if r.get("active", True)]


def _show_prices(rows: list[dict[str, Any]], json_out: bool, csv_out: bool) -> None:
    if json_out:
        print_json(rows)
        return
    cols = [
        c
        for c in (
            "provider",
            "model",
            "input",
            "cached_input",
            "cache_write_5m",
            "cache_write_1h",
            "output",
            "valid_from",
            "source",
        )
        if not rows or c in rows[0]
    ]
    if csv_out:
        write_csv(rows, cols)
        return
    from rich.table import Table

    t = Table(title="Prices, USD per 1M tokens")
    for c in cols:
        t.add_column(c, justify="right" if c not in ("provider", "model", "source", "valid_from") else "left")
    for r in rows:
        t.add_row(
            *[
                "" if r.get(c) is None else (f"{r[c]:g}" if isinstance(r.get(c), float) else str(r[c]))
                for c in cols
            ]
        )
    console().print(t)


@pricing_app.command("list")
def pricing_list(
    ctx: typer.Context,
    provider: str | None = typer.Option(
        None, "--provider", help="openai | anthropic | google | mistral | ..."
    ),
    json_out: bool = typer.Option(False, "--json"),
    csv_out: bool = typer.Option(False, "--csv"),
) -> None:
    """List models with their current prices per 1M tokens."""
    _show_prices(_price_rows(ctx, provider), json_out, csv_out)


def models_cmd(
    ctx: typer.Context,
    provider: str | None = typer.Option(None, "--provider"),
    json_out: bool = typer.Option(False, "--json"),
    csv_out: bool = typer.Option(False, "--csv"),
) -> None:
    """List models with prices per 1M tokens (same as `oaim pricing list`)."""
    _show_prices(_price_rows(ctx, provider), json_out, csv_out)


@pricing_app.command("set")
def pricing_set(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name as it appears in your usage."),
    input_price: float = typer.Option(..., "--input", help="USD per 1M input tokens."),
    output_price: float = typer.Option(..., "--output", help="USD per 1M output tokens."),
    cached: float | None = typer.Option(None, "--cached", help="USD per 1M cached input tokens."),
    cache_write: float | None = typer.Option(
        None, "--cache-write", help="USD per 1M cache-write tokens (5 min)."
    ),
    cache_write_1h: float | None = typer.Option(
        None, "--cache-write-1h", help="USD per 1M 1-hour cache writes."
    ),
    provider: str | None = typer.Option(None, "--provider"),
    valid_from: str | None = typer.Option(None, "--valid-from", help="YYYY-MM-DD the price starts applying."),
) -> None:
    """Add or replace a price override, then price stored records of that model retroactively."""
    from ..service.pricing import make_pricer

    if min(input_price, output_price) < 0:
        raise InputError("prices must be >= 0 USD per 1M tokens")
    spec: dict[str, Any] = {"input": input_price, "output": output_price}
    for k, v in (("cached_input", cached), ("cache_write", cache_write), ("cache_write_1h", cache_write_1h)):
        if v is not None:
            spec[k] = v
    if provider:
        spec["provider"] = provider
    if valid_from:
        spec["valid_from"] = valid_from
    st = state(ctx)
    prices = dict(st.settings.prices)
    prices[model] = spec
    _write_prices(prices)
    st._settings = None
    n = st.store.reprice(make_pricer(st.settings))
    typer.echo(f"price for {model} saved; {n} stored record(s) priced retroactively")
    typer.echo("records already priced keep their cost; recompute them with `oaim pricing reprice --all`")


def _write_prices(prices: dict[str, dict[str, Any]]) -> None:
    """Replace the [prices] table of the config file, validating settings and prices before writing."""
    import sys

    import tomli_w

    from ..config import Settings, atomic_write_text, config_path
    from ..errors import ConfigError
    from ..pricing.engine import Pricer

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    path = config_path()
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data["prices"] = prices
    try:
        Settings.model_validate(data)
    except ValueError as e:
        raise ConfigError(f"the new price makes the config invalid: {e}") from e
    Pricer(overrides=prices)  # raises PricingError naming the fix for a bad override
    atomic_write_text(path, tomli_w.dumps(data))


@pricing_app.command("update")
def pricing_update(
    ctx: typer.Context,
    source: str = typer.Argument(
        ..., help="URL or file of a genai-prices data.json or an openai-monitor snapshot."
    ),
    timeout: float = typer.Option(10.0, "--timeout"),
) -> None:
    """Refresh prices from a URL or file you give (no network otherwise), then price unpriced records."""
    from ..pricing.update import fetch_prices, save_snapshot
    from ..service.pricing import make_pricer, user_snapshot_path

    snap = fetch_prices(source, timeout=timeout)
    save_snapshot(snap, user_snapshot_path())
    st = state(ctx)
    n = st.store.reprice(make_pricer(st.settings))
    models = sum(len(p.get("models", [])) for p in snap.get("providers", []))
    typer.echo(
        f"prices updated from {source} ({models} models) into {user_snapshot_path()}; {n} unpriced record(s) now priced"
    )


@pricing_app.command("reprice")
def pricing_reprice(
    ctx: typer.Context,
    all_records: bool = typer.Option(
        False, "--all", help="Recompute every computed cost, not only unpriced ones."
    ),
) -> None:
    """Recompute costs of stored records with the current prices."""
    from ..service.pricing import make_pricer

    st = state(ctx)
    n = st.store.reprice(make_pricer(st.settings), only_unpriced=not all_records)
    typer.echo(f"{n} record(s) priced")


# -- reset / doctor ----------------------------------------------------------------------------------


def reset_cmd(
    ctx: typer.Context, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
) -> None:
    """Delete all tracking data (usage records, rollups, import progress). Config and prices stay."""
    st = state(ctx)
    if not yes and not typer.confirm(f"Delete all usage data in {st.url}?"):
        raise typer.Exit(1)
    removed = st.store.reset()
    typer.echo(
        f"removed {removed['usage_records']} usage record(s), {removed['rollup']} rollup row(s), "
        f"{removed['import_progress']} file progress entr(y/ies), {removed['import_runs']} import run(s)"
    )
    derived = {
        k: v
        for k, v in removed.items()
        if k not in ("usage_records", "rollup", "import_progress", "import_runs") and v
    }
    if derived:
        typer.echo("also removed: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in derived.items()))


def doctor_cmd(ctx: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """Check the home directory, database, config and sources, and say what to fix."""
    import os

    from ..config import config_path, home_dir
    from ..errors import MonitorError
    from ..sources import ADAPTERS

    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, fix: str = "") -> None:
        checks.append({"check": name, "ok": ok, "detail": detail, "fix": fix})

    home = home_dir()
    writable = home.exists() and os.access(home, os.W_OK)
    add(
        "home directory",
        writable or not home.exists(),
        str(home),
        "" if writable else "create it or set OAIM_HOME to a writable directory",
    )
    st = state(ctx)
    try:
        from ..config import key_hint, unknown_keys

        add(
            "config",
            True,
            str(config_path()) + ("" if config_path().exists() else " (not created yet: defaults)"),
        )
        for key in unknown_keys(st.settings):
            add("config", False, f"unknown key {key!r} in {config_path()} is ignored", key_hint(key))
    except MonitorError as e:
        add("config", False, str(e), "fix the file shown, or delete it to use defaults")
    try:
        n = st.store.count()
        add("database", True, f"{st.url}: {n} record(s)")
        for p in st.store.precedence_status():
            if p["double_counted_records"]:
                add(
                    f"double counting ({p['provider']})",
                    False,
                    f"{p['double_counted_records']} per-call record(s) of {p['provider']} fall on days synced "
                    f"from {p['usage_api_source']}; reports add both",
                    f"`oaim precedence {p['provider']} usage-api` lets the usage API replace them "
                    "(if they are the same organisation's calls)",
                )
            elif p["shadowed_records"]:
                add(
                    f"sources ({p['provider']})",
                    True,
                    f"{p['shadowed_records']} per-call record(s) replaced by {p['usage_api_source']} "
                    f"on the {p['covered_days']} day(s) it covers",
                )
        unpriced = st.store.unpriced_models()
        if unpriced:
            add(
                "prices",
                False,
                f"{sum(r[2] for r in unpriced)} record(s) of {len(unpriced)} model(s) unpriced",
                "oaim pricing set MODEL --input X --output Y",
            )
        else:
            add("prices", True, "every record priced")
    except MonitorError as e:
        add("database", False, str(e), "pass --db or set OAIM_DATABASE_URL to a writable database")
    cfg = {"claude-code": "claude_code", "codex": "codex", "gemini": "gemini"}
    for name, key in cfg.items():
        adapter = ADAPTERS[name]
        try:
            src_cfg = getattr(st.settings.sources, key)
            paths = [Path(p) for p in src_cfg.paths] or [None]
            files = sum(len(adapter.discover(p)) for p in paths)
            add(f"source {name}", True, f"{files} log file(s) found")
        except MonitorError as e:
            add(f"source {name}", True, f"not found ({e})", "")
        except Exception as e:  # noqa: BLE001 - doctor reports, never crashes
            add(f"source {name}", False, str(e), "check the path in the config")
    if json_out:
        print_json(checks)
    else:
        c = console()
        for ch in checks:
            mark = "ok " if ch["ok"] else "FIX"
            c.print(
                f"[{mark}] {ch['check']}: {ch['detail']}" + (f" -> {ch['fix']}" if ch["fix"] else ""),
                markup=False,
            )
    if not all(ch["ok"] for ch in checks):
        raise typer.Exit(1)


# -- demo --------------------------------------------------------------------------------------------


def demo_cmd(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Where to keep the demo's state (default: HOME/demo)."
    ),
    train_models: bool = typer.Option(
        True, "--train/--no-train", help="Fit forecasts and anomaly detectors."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the monitor's figures as JSON."),
) -> None:
    """The main job on bundled demo data: import 6 weeks of real-arrival usage, train, show the monitor.

    Runs in its own home directory (no key, no server, your real data untouched)."""
    import os
    from importlib import resources

    from ..config import home_dir
    from ..service.demo import shifted_first_ts, write_shifted_demo
    from ..service.ingest import run_import
    from ..service.pricing import make_pricer
    from ..sources import get_adapter
    from .common import AppState

    demo_home = (home or home_dir() / "demo").expanduser()
    os.environ["OAIM_HOME"] = str(demo_home)  # everything below (config, db, models) lives there
    st = ctx.find_root().obj = AppState(db_url=f"sqlite:///{demo_home / 'usage.db'}")
    st.extra = {"monitor_opts": {}}
    now = int(time.time())
    src = resources.files("openai_monitor") / "data" / "demo_usage.csv"
    shifted = write_shifted_demo(
        Path(str(src)), demo_home / "demo_usage.csv", now=now, tz=st.settings.timezone
    )
    err = console(stderr=True)
    result = run_import(
        st.store,
        get_adapter("csv"),
        files=[shifted],
        options={"format": "generic"},
        pricer=make_pricer(st.settings),
    )
    err.print(
        f"demo data: {result.inserted} new hourly bucket(s) imported into {demo_home} ({result.duplicates} already there)"
    )
    if train_models:
        import datetime as dt

        from ..service.train import train

        err.print("training forecasts and anomaly detectors (about a minute) ...")
        tr = train(st.store, st.settings, now=dt.datetime.fromtimestamp(now, dt.timezone.utc))
        err.print(
            f"trained {tr.fitted} series ({tr.failed} failed), {tr.detectors} anomaly detector(s), "
            f"{tr.new_anomalies} new anomal(y/ies) in {tr.seconds:.0f} s",
            markup=False,
        )
        from ..service.train import detect

        # A first training scores only the recent weeks; the demo scans its whole history for findings.
        first = shifted_first_ts(shifted)
        found = detect(
            st.store,
            st.settings,
            now=dt.datetime.fromtimestamp(now, dt.timezone.utc),
            since=first,
            rescan=True,
        )
        err.print(f"scanned the whole demo history for anomalies: {len(found.new)} finding(s)", markup=False)
    from . import default_command

    monitor = default_command(ctx)
    if monitor is not None:
        try:
            monitor(ctx, plan=None, limit=None, timezone=None, refresh=10.0, once=True, json_out=json_out)
        except typer.Exit as e:
            # The monitor's exit code is a status for cron (e.g. 12: anomaly open); the demo itself succeeded.
            if e.exit_code:
                err.print(f"(the monitor would exit with status {e.exit_code}: see README, exit codes)")
    err.print(
        f"explore it: OAIM_HOME={demo_home} oaim forecast --days 30 | oaim anomalies | oaim summary --by model",
        markup=False,
    )
