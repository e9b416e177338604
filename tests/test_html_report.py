"""The static HTML report: self-contained (no external resources), with the expected figures."""

from __future__ import annotations

import json
import re
import sqlite3
from html.parser import HTMLParser

import pytest
from insights_data import DAY, START, WEEKS, make_db

from openai_monitor.render.html import bar_chart_svg, heatmap_svg, line_chart_svg
from openai_monitor.store.db import sqlite_path

END = START + WEEKS * 7 * DAY


def _seed_ml(url: str) -> None:
    """A stored daily forecast (one week after the data) and one anomaly, as training would write them."""
    summary = {"projection": {"mean": 123.45, "lower_80": 100.0, "upper_80": 150.0}}
    with sqlite3.connect(sqlite_path(url)) as c:
        c.execute(
            "INSERT INTO forecasts (series_id, scope_dim, scope_key, metric, freq, kind, trained_at, data_start, "
            "data_end, rows, data_hash, summary_json) VALUES ('cost|d|all|', 'all', '', 'cost', 'd', 'prophet', "
            "?, ?, ?, 28, 'h', ?)",
            (END, START, END - DAY, json.dumps(summary)),
        )
        for i in range(7):
            c.execute(
                "INSERT INTO forecast_points VALUES ('cost|d|all|', ?, 2.5, 2.0, 3.0, 1.5, 3.5)",
                (END + i * DAY,),
            )
        c.execute(
            "INSERT INTO anomalies (dedup_key, scope_dim, scope_key, start_ts, end_ts, severity, score, impact_usd, "
            "explanation, detected_at) VALUES ('user:ann|1', 'user', 'ann', ?, ?, 'high', 0.9, 12.5, ?, ?)",
            (START + 9 * DAY + 10 * 3600, START + 9 * DAY + 12 * 3600, "ann <spent> 8x her usual", END),
        )


@pytest.fixture
def db(db_url: str) -> str:
    make_db(db_url).dispose()
    return db_url


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action", "data")]


def _report(run_cli, db: str, tmp_path, *extra: str) -> str:
    out = tmp_path / "report.html"
    r = run_cli("--db", db, "report", "--html", str(out), "--since", "2025-01-01", *extra)
    assert r.exit_code == 0, r.stderr
    return out.read_text(encoding="utf-8")


def _total(url: str) -> float:
    with sqlite3.connect(sqlite_path(url)) as c:
        return c.execute("SELECT SUM(cost_usd) FROM usage_records").fetchone()[0]


def test_report_is_self_contained(db: str, run_cli, tmp_path) -> None:
    _seed_ml(db)
    html = _report(run_cli, db, tmp_path)
    p = _Refs()
    p.feed(html)
    external = [r for r in p.refs if re.match(r"\s*(https?:)?//", r, re.I)]
    assert external == []
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", html, re.I)
    assert "script" not in p.tags and "link" not in p.tags and "img" not in p.tags and "iframe" not in p.tags
    assert "@import" not in html and "url(" not in html
    assert html.count("<svg") >= 5  # daily line, three bar charts, heatmap


def test_report_figures(db: str, run_cli, tmp_path) -> None:
    _seed_ml(db)
    html = _report(run_cli, db, tmp_path)
    total = _total(db)
    assert f'<b id="total-cost">${total:,.2f}</b>' in html
    for name in ("gpt-4o-mini", "claude-sonnet-4", "batchbot", "ann", "etl", "app"):
        assert f">{name}<" in html
    assert "weekday batch job at 02:00" in html and "interactive office hours" in html
    assert "CLI sessions (80, " in html
    # Forecast band from the stored points and the stored projection.
    assert '<polygon class="band"' in html and "80% band" in html and "$123.45" in html
    # The anomaly, escaped.
    assert "ann &lt;spent&gt; 8x her usual" in html and "$12.50" in html
    assert "<h2>Recommendations</h2>" in html


def test_report_without_training_says_so(db: str, run_cli, tmp_path) -> None:
    html = _report(run_cli, db, tmp_path)
    assert "run <code>oaim train</code>" in html
    assert '<polygon class="band"' not in html


def test_report_window(db: str, run_cli, tmp_path) -> None:
    html = _report(run_cli, db, tmp_path, "--until", "2025-01-12")  # the first week only
    with sqlite3.connect(sqlite_path(db)) as c:
        week = c.execute(
            "SELECT SUM(cost_usd) FROM usage_records WHERE ts < ?", (START + 7 * DAY,)
        ).fetchone()[0]
    assert f'<b id="total-cost">${week:,.2f}</b>' in html


def test_report_bad_target(db: str, run_cli, tmp_path) -> None:
    r = run_cli("--db", db, "report", "--html", str(tmp_path / "missing" / "r.html"))
    assert r.exit_code == 2 and "existing directory" in r.stderr


def test_svg_helpers_scale_and_escape() -> None:
    svg = line_chart_svg(["2025-01-01", "2025-01-02"], [1.0, 3.0], [("2025-01-03", 2.0, 1.0, 40.0)])
    # The y axis is rounded up from the band's upper value (40 -> 50), not from the history (3 -> 5).
    assert svg.count("<polyline") == 2 and ">$50.00<" in svg and ">$5.00<" not in svg
    bars = bar_chart_svg([("<b>", 2.0), ("x", 1.0)])
    assert "&lt;b&gt;" in bars and "<b>" not in bars
    widths = [float(w) for w in re.findall(r'class="bar"[^>]*width="([\d.]+)"', bars)]
    assert widths[0] == pytest.approx(2 * widths[1])
    grid = [[0.0] * 24 for _ in range(7)]
    grid[0][2] = 5.0
    heat = heatmap_svg(grid, ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    assert heat.count("<rect") == 7 * 24 and "Mon 02:00 $5.00" in heat
