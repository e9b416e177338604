"""`oaim anomalies` list / ack / explain through the real CLI on a trained copy of the synthetic store."""

from __future__ import annotations

import json

import pytest
from ml_helpers import CONFIG, LOOP_END, LOOP_START, LOOP_USER, NOW_TS, trained_copy


@pytest.fixture
def trained(oaim_home, monkeypatch):
    trained_copy(oaim_home)
    (oaim_home / "config.toml").write_text(CONFIG)
    monkeypatch.setenv("OAIM_NOW", str(NOW_TS))
    return oaim_home


def _loop_finding(rows: list[dict]) -> dict:
    return next(
        a
        for a in rows
        if a["scope"] == f"user:{LOOP_USER}" and a["start_ts"] < LOOP_END and a["end_ts"] > LOOP_START
    )


def test_list_shows_the_loop(trained, run_cli):
    doc = json.loads(run_cli("anomalies", "--json").stdout)
    hit = _loop_finding(doc["anomalies"])
    assert hit["status"] == "open" and hit["severity"] in ("low", "medium", "high", "critical")
    assert doc["last_training"]["status"] == "partial"
    text = run_cli("anomalies")
    assert text.exit_code == 0 and f"user:{LOOP_USER}" in text.stdout and "loop" in text.stdout
    scoped = json.loads(run_cli("anomalies", "list", "--scope", "user:bob", "--json").stdout)
    assert scoped["anomalies"] == []
    since = json.loads(run_cli("anomalies", "--since", "2025-02-14", "--json").stdout)
    assert all(a["end_ts"] > LOOP_END for a in since["anomalies"])


def test_ack_expected_then_listed_only_with_status(trained, run_cli):
    hit = _loop_finding(json.loads(run_cli("anomalies", "--json").stdout)["anomalies"])
    res = run_cli("anomalies", "ack", str(hit["id"]), "--expected")
    assert res.exit_code == 0 and "expected" in res.stdout
    open_ids = [a["id"] for a in json.loads(run_cli("anomalies", "--json").stdout)["anomalies"]]
    assert hit["id"] not in open_ids
    every = json.loads(run_cli("anomalies", "--status", "expected", "--json").stdout)["anomalies"]
    assert [a["id"] for a in every] == [hit["id"]]
    assert run_cli("anomalies", "ack", "99999").exit_code == 2


def test_explain_shows_evidence_attribution_and_chart(trained, run_cli):
    rows = json.loads(run_cli("anomalies", "--scope", "all", "--json").stdout)["anomalies"]
    account = next(a for a in rows if a["start_ts"] < LOOP_END and a["end_ts"] > LOOP_START)
    res = run_cli("anomalies", "explain", str(account["id"]))
    assert res.exit_code == 0, res.stderr
    assert "requests" in res.stdout and "tokens per request" in res.stdout
    assert "attribution" in res.stdout and LOOP_USER in res.stdout
    assert "window vs usual" in res.stdout
    doc = json.loads(run_cli("anomalies", "explain", str(account["id"]), "--json").stdout)
    hours = doc["chart"]["hours"]
    i = hours.index(LOOP_START)
    assert doc["chart"]["observed_cost"][i] > 3 * doc["chart"]["usual_cost"][i]


def test_bad_scope_is_a_one_line_error(trained, run_cli):
    res = run_cli("anomalies", "--scope", "team")
    assert res.exit_code == 2 and "user:NAME" in res.stderr
