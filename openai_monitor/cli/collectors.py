"""Collector commands: ``sync openai|anthropic``, ``reconcile``, ``precedence``, ``keys set|list|rm``."""

from __future__ import annotations

import sys
import time

import typer

from ..errors import ConfigError
from .common import console, print_json, state

sync_app = typer.Typer(
    help="Fetch organisation usage and billed costs from provider admin APIs.", no_args_is_help=True
)
keys_app = typer.Typer(help="Admin API keys (stored in the home directory, mode 0600).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(sync_app, name="sync")
    app.command("reconcile")(reconcile_cmd)
    app.command("precedence")(precedence_cmd)
    app.add_typer(keys_app, name="keys")


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    from ..timeutil import parse_date_bound

    return parse_date_bound(value, "UTC")


def _admin_key(name: str, env: str) -> str:
    from ..service.keys import get_key

    key = get_key(name)
    if not key:
        raise ConfigError(f"no admin key: run `oaim keys set {name}` or set {env}")
    return key


def _print_sync(result: object, json_out: bool) -> None:
    data = result.as_dict()  # type: ignore[attr-defined]
    if json_out:
        print_json(data)
        return
    out = console()
    out.print(
        f"{data['provider']}: {data['new_records']} new usage records, {data['requests']} requests"
        f" ({data['retries']} retried), {data['seconds']:.1f} s"
    )
    for e in data["endpoints"]:
        what = (
            f"{e['billed_rows']} billed rows"
            if e["endpoint"] in ("costs", "cost_report")
            else (f"{e['records']} records ({e['new_records']} new, {e['replaced']} replaced)")
        )
        line = f"  {e['endpoint']:<21} {e['buckets']:>4} buckets  {what}"
        if e["partial_buckets"]:
            line += f"  {e['partial_buckets']} partial (refetched next time)"
        if e["skipped"]:
            line += f"  {e['skipped']} malformed results skipped"
        out.print(line)
        for err in e["errors"][:3]:
            out.print(f"    {err}")


def _run_sync(
    ctx: typer.Context,
    provider: str,
    since: str | None,
    bucket: str,
    base_url: str,
    no_costs: bool,
    json_out: bool,
) -> None:
    from ..service import sync
    from ..service.pricing import make_pricer

    key_name, env = {
        "openai": ("openai-admin", "OPENAI_ADMIN_KEY"),
        "anthropic": ("anthropic-admin", "ANTHROPIC_ADMIN_KEY"),
    }[provider]
    key = _admin_key(key_name, env)
    st = state(ctx)
    run = sync.sync_openai if provider == "openai" else sync.sync_anthropic
    result = run(
        st.store,
        key,
        base_url=base_url,
        since=_since(since),
        bucket=bucket,
        pricer=make_pricer(st.settings),
        costs=not no_costs,
    )
    _print_sync(result, json_out)


@sync_app.command("openai")
def sync_openai_cmd(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="Start date (YYYY-MM-DD, UTC); default: resume."),
    bucket: str = typer.Option("1d", "--bucket", help="Bucket width: 1h or 1d."),
    base_url: str = typer.Option(
        "https://api.openai.com/v1", "--base-url", help="API base URL (gateways, tests)."
    ),
    no_costs: bool = typer.Option(False, "--no-costs", help="Skip the Costs API."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """OpenAI organization Usage API (completions, embeddings, moderations, images, audio) and Costs API."""
    _run_sync(ctx, "openai", since, bucket, base_url, no_costs, json_out)


@sync_app.command("anthropic")
def sync_anthropic_cmd(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="Start date (YYYY-MM-DD, UTC); default: resume."),
    bucket: str = typer.Option("1d", "--bucket", help="Bucket width: 1h or 1d."),
    base_url: str = typer.Option("https://api.anthropic.com/v1", "--base-url", help="API base URL."),
    no_costs: bool = typer.Option(False, "--no-costs", help="Skip the cost report."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Anthropic Admin API messages usage report and cost report."""
    _run_sync(ctx, "anthropic", since, bucket, base_url, no_costs, json_out)


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.1f}%" if pct else f"${v:,.2f}"


def precedence_cmd(
    ctx: typer.Context,
    provider: str | None = typer.Argument(None, help="openai | anthropic (omit to show every provider)."),
    mode: str | None = typer.Argument(None, help="usage-api | all"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Which records count when a provider's usage API and per-call sources (proxy, SDK, CLI logs, CSV)
    both report the same calls: `usage-api` lets the synced usage API replace the per-call records on the
    UTC days it covers (they stay in the history, shadowed); `all` (the default) adds every source up."""
    store = state(ctx).store
    if provider is not None and mode is None:
        raise ConfigError(f"give the precedence too: `oaim precedence {provider} usage-api` (or `all`)")
    if provider is not None and mode is not None:
        store.set_precedence(provider, mode)
    rows = store.precedence_status()
    if provider is not None:
        rows = [r for r in rows if r["provider"] == provider]
    if json_out:
        print_json(rows)
        return
    from datetime import datetime, timezone

    def ts_to_date(ts: int) -> str:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")

    out = console()
    for r in rows:
        span = (
            f"{r['covered_days']} day(s) covered by {r['usage_api_source']} "
            f"({ts_to_date(r['first_day'])} to {ts_to_date(r['last_day'])})"
            if r["covered_days"]
            else f"nothing synced from {r['usage_api_source']} yet"
        )
        line = f"{r['provider']}: precedence {r['precedence']}; {span}"
        if r["shadowed_records"]:
            line += f"; {r['shadowed_records']} per-call record(s) replaced by the usage API"
        if r["double_counted_records"]:
            line += (
                f"; {r['double_counted_records']} per-call record(s) counted on top of it: "
                f"`oaim precedence {r['provider']} usage-api` counts them once"
            )
        out.print(line, markup=False)


def reconcile_cmd(
    ctx: typer.Context,
    month: str | None = typer.Option(None, "--month", help="UTC month YYYY-MM (default: this month)."),
    provider: str = typer.Option("openai", "--provider", help="openai | anthropic"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Estimated cost (tokens x prices) against billed cost, per day and per model, with the drift."""
    from ..service.reconcile import reconcile

    if provider not in ("openai", "anthropic"):
        raise ConfigError(f"unknown --provider {provider!r}; use openai or anthropic")
    with state(ctx).reader() as reader:
        rec = reconcile(reader, provider=provider, month=month, now=int(time.time()))
    if json_out:
        print_json(rec.as_dict())
        return
    from rich.table import Table

    out = console()
    if not rec.days:
        out.print(
            f"nothing to reconcile for {provider} in {rec.month}: run `oaim sync {provider}` to fetch usage and costs"
        )
        return
    out.print(
        f"{provider} {rec.month}: estimate from {rec.basis}; billed from the provider's cost API (UTC days)"
    )
    for title, rows in (("day", rec.days), ("model", rec.models)):
        t = Table(title=f"by {title}")
        for col in (title, "estimated", "billed", "drift", "drift %", "unpriced"):
            t.add_column(col, justify="left" if col == title else "right")
        for r in [*rows, rec.total] if title == "day" else rows:
            t.add_row(
                r.key,
                _fmt(r.estimated_usd),
                _fmt(r.billed_usd),
                _fmt(r.drift_usd),
                _fmt(r.drift_pct, pct=True),
                str(r.unpriced_records or ""),
            )
        out.print(t)


@keys_app.command("set")
def keys_set(name: str = typer.Argument(..., help="openai-admin | anthropic-admin")) -> None:
    """Store a key: typed at a hidden prompt, or read from stdin when piped."""
    from ..service.keys import KNOWN_KEYS, keys_path, set_key

    if name not in KNOWN_KEYS:
        raise ConfigError(f"unknown key name {name!r}; use one of: {', '.join(KNOWN_KEYS)}")
    if sys.stdin is not None and sys.stdin.isatty():
        value = typer.prompt(f"{name} key", hide_input=True)
    else:
        value = sys.stdin.readline() if sys.stdin is not None else ""
    set_key(name, value)
    typer.echo(f"stored {name} in {keys_path()} (mode 0600)")


@keys_app.command("list")
def keys_list(json_out: bool = typer.Option(False, "--json")) -> None:
    """Keys available, where they come from, and a fingerprint (never the key)."""
    from ..service.keys import list_keys

    rows = list_keys()
    if json_out:
        print_json(rows)
        return
    if not rows:
        typer.echo("no keys: run `oaim keys set openai-admin` (or anthropic-admin)")
    for r in rows:
        typer.echo(f"{r['name']:<16} {r['fingerprint']}  {r['source']}")


@keys_app.command("rm")
def keys_rm(name: str = typer.Argument(..., help="openai-admin | anthropic-admin")) -> None:
    """Remove a stored key."""
    from ..service.keys import remove_key

    if not remove_key(name):
        raise ConfigError(f"no stored key named {name!r}; `oaim keys list` shows the stored ones")
    typer.echo(f"removed {name}")
