"""Core commands through the real CLI: version, config, pricing update over a local HTTP server, log, demo."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_monitor import __version__


def test_version_and_three_program_names(run_cli) -> None:
    r = run_cli("--version")
    assert r.exit_code == 0 and __version__ in r.stdout
    import tomllib

    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert set(scripts) == {"openai-monitor", "oaimonitor", "oaim"} and len(set(scripts.values())) == 1


def test_config_set_show_path_and_validation(run_cli, oaim_home: Path) -> None:
    r = run_cli("config", "path")
    assert r.stdout.strip() == str(oaim_home / "config.toml")
    assert run_cli("config", "set", "plan", "tier3").exit_code == 0
    assert run_cli("config", "set", "daemon.retrain_time", "04:30").exit_code == 0
    shown = json.loads(run_cli("config", "show", "--json").stdout)
    assert shown["plan"] == "tier3" and shown["daemon"]["retrain_time"] == "04:30"
    bad = run_cli("config", "set", "plan", "tier9")
    assert bad.exit_code == 2 and "plan must be one of" in bad.stderr
    assert json.loads(run_cli("config", "show", "--json").stdout)["plan"] == "tier3"  # file unchanged
    typo = run_cli("config", "set", "timezon", "Europe/Berlin")
    assert typo.exit_code == 2 and "did you mean 'timezone'" in typo.stderr
    assert "timezon" not in (oaim_home / "config.toml").read_text()
    assert (
        run_cli("config", "set", "tiers.tier3.monthly_limit_usd", "2000").exit_code == 0
    )  # an extra section
    (oaim_home / "config.toml").write_text("plan = [unclosed\n")
    broken = run_cli("summary")
    assert broken.exit_code == 2 and "invalid TOML" in broken.stderr and "Traceback" not in broken.stderr


@pytest.fixture
def price_server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server serving a genai-prices-style data.json with one made-up model."""
    data = [
        {
            "id": "acme",
            "name": "Acme",
            "api_pattern": "acme",
            "models": [
                {
                    "id": "acme-1",
                    "name": "Acme 1",
                    "match": {"equals": "acme-1"},
                    "prices": {"input_mtok": 4, "output_mtok": 8},
                }
            ],
        }
    ]
    (tmp_path / "data.json").write_text(json.dumps(data))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data.json"
    server.shutdown()


def test_unknown_model_priced_after_pricing_update_from_url(run_cli, db_url: str, price_server: str) -> None:
    r = run_cli(
        "log", "--model", "acme-1", "--provider", "acme", "--input", "1000", "--output", "500", "--json"
    )
    assert json.loads(r.stdout)["priced"] is False
    summary = json.loads(run_cli("summary", "--json").stdout)
    assert summary["unpriced_records"] == 1
    up = run_cli("pricing", "update", price_server)
    assert up.exit_code == 0, up.stderr
    assert "1 unpriced record(s) now priced" in up.stdout
    cost = (
        sqlite3.connect(db_url.removeprefix("sqlite:///"))
        .execute("SELECT cost_usd FROM usage_records")
        .fetchone()[0]
    )
    assert cost == pytest.approx((1000 * 4 + 500 * 8) / 1_000_000)
    summary = json.loads(run_cli("summary", "--json").stdout)
    assert summary["unpriced_records"] == 0
    assert summary["cost_usd"] == pytest.approx(0.008)


def test_pricing_update_bad_source_is_one_line(run_cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run_cli("pricing", "update", str(bad))
    assert r.exit_code == 4 and len(r.stderr.strip().splitlines()) == 1


def test_reset_asks_and_reports(run_cli) -> None:
    run_cli("log", "--model", "gpt-4o", "--input", "10", "--output", "5")
    assert run_cli("reset", input="n\n").exit_code == 1
    r = run_cli("reset", "--yes")
    assert r.exit_code == 0 and "removed 1 usage record(s)" in r.stdout
    assert json.loads(run_cli("summary", "--json").stdout)["records"] == 0


def test_demo_without_training_imports_real_arrivals_ending_yesterday(run_cli, oaim_home: Path) -> None:
    r = run_cli("demo", "--no-train", "--json")
    assert r.exit_code == 0, r.stderr  # the monitor's status codes (stale, anomaly open) are not the demo's
    db = sqlite3.connect(oaim_home / "demo" / "usage.db")
    n, requests, last = db.execute("SELECT COUNT(*), SUM(requests), MAX(ts) FROM usage_records").fetchone()
    assert n == 6534 and requests > 90_000
    import time

    assert 0 < time.time() - last < 2 * 86400 + 3600  # shifted to end yesterday


def test_reset_also_removes_derived_findings_but_keeps_budgets(run_cli, db_url: str) -> None:
    run_cli("log", "--model", "gpt-4o", "--input", "10", "--output", "5")
    assert run_cli("budget", "set", "50", "--period", "monthly").exit_code == 0
    db = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    db.execute(
        "INSERT INTO anomalies (dedup_key, scope_dim, scope_key, start_ts, end_ts, severity, score, impact_usd, "
        "explanation, evidence_json, attribution_json, detected_at, status, kind) "
        "VALUES ('all::1', 'all', '', 1, 3601, 'high', 0.9, 5.0, 'x', '{}', '[]', 1, 'open', 'loop')"
    )
    db.commit()
    r = run_cli("reset", "--yes")
    assert r.exit_code == 0 and "1 anomalies" in r.stdout
    assert db.execute("SELECT COUNT(*) FROM anomalies").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM budgets").fetchone()[0] == 1


def test_doctor_flags_org_api_and_per_call_records_counted_twice(run_cli, db_url: str) -> None:
    from openai_monitor.domain import UsageRecord
    from openai_monitor.store import Store

    store = Store(db_url)
    day = 1_750_000_000 - 1_750_000_000 % 86400
    store.ingest(
        [
            UsageRecord(
                ts=day,
                provider="openai",
                model="gpt-4o",
                dedup_key="api:1",
                source="openai-usage-api",
                bucket_seconds=86400,
                requests=2,
                input_tokens=100,
                output_tokens=10,
                cost_usd=0.1,
            ),
            UsageRecord(
                ts=day + 3600,
                provider="openai",
                model="gpt-4o",
                dedup_key="proxy:1",
                source="proxy",
                input_tokens=50,
                output_tokens=5,
                cost_usd=0.05,
            ),
        ]
    )
    r = run_cli("doctor", "--json")
    checks = {c["check"]: c for c in json.loads(r.stdout)}
    assert r.exit_code == 1
    assert checks["double counting (openai)"]["ok"] is False
    assert "1 per-call record(s)" in checks["double counting (openai)"]["detail"]


def test_full_demo_trains_finds_anomalies_and_exits_zero(oaim_home: Path) -> None:
    """README command 1: the whole main job on the bundled demo data succeeds, in a fresh process as a user
    runs it (in-process, another test may already have loaded the monitor's command module)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OAIM_HOME": str(oaim_home), "NO_COLOR": "1", "COLUMNS": "120"}
    r = subprocess.run(
        [sys.executable, "-m", "openai_monitor", "demo"], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    db = sqlite3.connect(oaim_home / "demo" / "usage.db")
    assert (
        db.execute("SELECT COUNT(*) FROM forecasts WHERE scope_dim = 'all' AND metric = 'cost'").fetchone()[0]
        >= 1
    )
    assert db.execute("SELECT COUNT(*) FROM anomalies").fetchone()[0] >= 1
    assert "Month to date" in r.stdout


def test_command_map_matches_the_modules_and_help_lists_every_command(run_cli) -> None:
    """The app builds only the module of the command run (cli.COMMANDS); the map names every command each
    module registers, and ``--help`` lists them all in the map's order."""
    import importlib
    import pkgutil

    import typer

    import openai_monitor.cli as cli
    from openai_monitor.cli import COMMANDS

    registered = {}
    for info in pkgutil.iter_modules(cli.__path__):  # every module of the package that registers commands
        mod = importlib.import_module(f"openai_monitor.cli.{info.name}")
        if not hasattr(mod, "register"):
            continue
        part = typer.Typer()
        mod.register(part)
        names = [c.name for c in part.registered_commands] + [g.name for g in part.registered_groups]
        registered.update(dict.fromkeys(names, info.name))
    assert registered == COMMANDS
    listed = [
        line.split()[0]
        for line in run_cli("--help").stdout.split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    ]
    assert listed == list(COMMANDS)


def test_a_command_builds_only_its_module(tmp_path: Path) -> None:
    """``oaim summary`` imports the reports commands, not the ML, daemon or proxy ones."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\nfrom openai_monitor.cli import main\nsys.argv = ['oaim', 'summary', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('openai_monitor.cli.')), file=sys.stderr)"
    )
    env = {**os.environ, "OAIM_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = r.stderr.strip().splitlines()[-1]
    assert "openai_monitor.cli.reports" in loaded
    assert not any(f"openai_monitor.cli.{m}'" in loaded for m in ("ml", "service", "proxy", "insights"))
