"""Alert channels against real loopback receivers, and dedup / cooldown / history in a real database."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import pytest
from receivers import DBusSession, WebhookServer, self_signed_cert

from openai_monitor.config import Settings
from openai_monitor.errors import ConfigError
from openai_monitor.service.alerts import (
    Alert,
    AlertError,
    DesktopChannel,
    EmailChannel,
    WebhookChannel,
    channels_from_settings,
    dispatch,
    sample_alert,
)

ALERT = Alert(
    kind="anomaly",
    dedup_key="anomaly:all|1700000000",
    severity="high",
    title="Unusual spend on all usage (+$12.50)",
    body="cost 14.2x the usual for this hour",
    data={"impact_usd": 12.5},
)


def _hook(kind: str, url: str, **extra: object) -> WebhookChannel:
    return WebhookChannel("hook", {"type": kind, "url": url, "backoff_seconds": 0.01, **extra})


# -- webhooks --------------------------------------------------------------------------------------


def test_slack_format_arrives() -> None:
    with WebhookServer() as srv:
        _hook("slack", srv.url("/slack")).send(ALERT)
    [req] = srv.requests
    assert req["path"] == "/slack"
    body = req["body"]
    assert body["text"].startswith("[HIGH] Unusual spend on all usage")
    assert "14.2x" in body["text"]
    assert body["blocks"][0]["text"]["text"] == ALERT.title


def test_discord_format_arrives() -> None:
    with WebhookServer() as srv:
        _hook("discord", srv.url("/discord")).send(ALERT)
    body = srv.requests[0]["body"]
    assert body["content"] == "[HIGH] Unusual spend on all usage (+$12.50)"
    [embed] = body["embeds"]
    assert embed["title"] == ALERT.title
    assert embed["description"] == ALERT.body
    assert embed["color"] == 0xED4245


def test_generic_json_carries_the_finding_and_headers() -> None:
    with WebhookServer() as srv:
        _hook("webhook", srv.url(), headers={"X-Token": "abc"}).send(ALERT)
    req = srv.requests[0]
    assert req["headers"]["X-Token"] == "abc"
    body = req["body"]
    assert body["source"] == "openai-monitor"
    assert {k: body[k] for k in ("kind", "dedup_key", "severity", "title", "body", "data")} == ALERT.as_dict()


def test_webhook_retries_after_server_errors() -> None:
    with WebhookServer(responses=[500, 503]) as srv:
        _hook("slack", srv.url(), retries=3).send(ALERT)
    assert len(srv.requests) == 3  # 500, 503, then 200


def test_webhook_gives_up_after_retries_with_the_reason() -> None:
    with WebhookServer(responses=[500, 500, 500]) as srv:
        with pytest.raises(AlertError, match=r"after 3 attempt\(s\): HTTP 500"):
            _hook("slack", srv.url(), retries=2).send(ALERT)
    assert len(srv.requests) == 3


def test_webhook_client_error_is_not_retried() -> None:
    with WebhookServer(responses=[404]) as srv:
        with pytest.raises(AlertError, match="HTTP 404"):
            _hook("discord", srv.url(), retries=3).send(ALERT)
    assert len(srv.requests) == 1


def test_webhook_timeout() -> None:
    with WebhookServer(delay=1.0) as srv:
        t0 = time.monotonic()
        with pytest.raises(AlertError, match="ReadTimeout"):
            _hook("webhook", srv.url(), retries=0, timeout_seconds=0.2).send(ALERT)
        assert time.monotonic() - t0 < 1.0


def test_channel_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"alerts\.x\.type must be one of"):
        channels_from_settings(Settings(alerts={"x": {"type": "pager"}}))
    with pytest.raises(ConfigError, match=r"alerts\.s\.url must be an http\(s\) URL"):
        channels_from_settings(Settings(alerts={"s": {"type": "slack"}}))
    with pytest.raises(ConfigError, match=r"alerts\.m: missing host"):
        channels_from_settings(Settings(alerts={"m": {"type": "email", "to": "a@b.c"}}))
    # scalar keys of [alerts] are options, not channels
    assert channels_from_settings(Settings(alerts={"min_severity": "low", "cooldown_minutes": 5})) == {}


# -- email -----------------------------------------------------------------------------------------


@pytest.fixture
def smtp_server(tmp_path: Path):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = self_signed_cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    received: dict[str, list] = {"messages": [], "auth": []}

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received["messages"].append(
                {"from": envelope.mail_from, "to": envelope.rcpt_tos, "data": envelope.content.decode()}
            )
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"bot",
            b"s3cret",
        )
        received["auth"].append((mechanism, ok, session.ssl is not None))
        return AuthResult(success=ok, handled=False)

    with socket.socket() as probe:  # aiosmtpd 1.4 cannot be given port 0: pick a free one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        auth_require_tls=True,
        auth_exclude_mechanism=["PLAIN"],  # the client must use AUTH LOGIN
        authenticator=authenticator,
        server_hostname="127.0.0.1",
    )
    controller.start()
    try:
        yield {"port": port, "cert": cert, **received}
    finally:
        controller.stop()


def _email(smtp: dict, **extra: object) -> EmailChannel:
    conf = {
        "type": "email",
        "host": "127.0.0.1",
        "port": smtp["port"],
        "starttls": True,
        "username": "bot",
        "password_env": "OAIM_TEST_SMTP_PASSWORD",
        "from": "oaim@example.test",
        "to": ["me@example.test", "ops@example.test"],
        "ca_file": str(smtp["cert"]),
        **extra,
    }
    return EmailChannel("email", conf)


def test_email_over_starttls_with_login(smtp_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAIM_TEST_SMTP_PASSWORD", "s3cret")
    _email(smtp_server).send(ALERT)
    assert smtp_server["auth"] == [("LOGIN", True, True)]  # AUTH LOGIN, accepted, inside TLS
    [msg] = smtp_server["messages"]
    assert msg["from"] == "oaim@example.test"
    assert msg["to"] == ["me@example.test", "ops@example.test"]
    assert "Subject: [oaim high] Unusual spend on all usage (+$12.50)" in msg["data"]
    assert "14.2x the usual" in msg["data"]


def test_email_wrong_password_is_an_alert_error(smtp_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAIM_TEST_SMTP_PASSWORD", "wrong")
    with pytest.raises(AlertError, match="SMTPAuthenticationError"):
        _email(smtp_server).send(ALERT)
    assert smtp_server["messages"] == []


def test_email_missing_password_variable(smtp_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OAIM_TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(AlertError, match="OAIM_TEST_SMTP_PASSWORD is not set"):
        _email(smtp_server).send(ALERT)


def test_email_rejects_an_untrusted_certificate(smtp_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAIM_TEST_SMTP_PASSWORD", "s3cret")
    chan = _email(smtp_server)
    chan.ca_file = None  # system CAs do not trust the test's self-signed certificate
    with pytest.raises(AlertError, match="CERTIFICATE_VERIFY_FAILED"):
        chan.send(ALERT)
    assert smtp_server["messages"] == []


# -- desktop (D-Bus) -------------------------------------------------------------------------------


@pytest.fixture
def dbus_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    session = DBusSession(tmp_path)
    try:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.start_bus())
        yield session
    finally:
        session.stop()


def test_desktop_notification_arrives_over_dbus(dbus_session: DBusSession) -> None:
    dbus_session.start_listener()
    DesktopChannel("desktop", {"type": "desktop"}).send(ALERT)
    DesktopChannel("desktop", {"type": "desktop"}).send(sample_alert())
    got = dbus_session.received()
    assert [(n["summary"], n["body"]) for n in got] == [
        (ALERT.title, ALERT.body),
        ("openai-monitor test alert", "If you can read this, the channel works."),
    ]
    assert got[0]["app_name"] == "openai-monitor"
    assert [n["urgency"] for n in got] == [2, 1]  # high -> critical urgency, info -> normal


def test_desktop_without_notification_server_fails_loudly(dbus_session: DBusSession) -> None:
    with pytest.raises(AlertError, match="no desktop notification server answered"):
        DesktopChannel("desktop", {"type": "desktop"}).send(ALERT)


# -- dispatch: dedup, cooldown, history ------------------------------------------------------------


def _settings(url: str, **alerts: object) -> Settings:
    return Settings(
        alerts={
            "min_severity": "medium",
            "cooldown_minutes": 60,
            "hook": {"type": "webhook", "url": url},
            **alerts,
        }
    )


def _rows(store) -> list[dict]:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM alerts ORDER BY id"))]


def test_same_finding_is_sent_once_per_cooldown(db_url: str) -> None:
    from openai_monitor.store import Store

    store = Store(db_url)
    t0 = 1_800_000_000
    with WebhookServer() as srv:
        settings = _settings(srv.url())
        first = dispatch(store.engine, settings, [ALERT], now=t0)
        again = dispatch(store.engine, settings, [ALERT, ALERT], now=t0 + 600)
        later = dispatch(store.engine, settings, [ALERT], now=t0 + 3601)
    assert [o.status for o in first] == ["sent"]
    assert [o.status for o in again] == ["suppressed", "suppressed"]
    assert [o.status for o in later] == ["sent"]
    assert len(srv.requests) == 2
    rows = _rows(store)
    assert [(r["status"], r["repeats"], r["created_at"], r["last_seen_at"]) for r in rows] == [
        ("sent", 2, t0, t0 + 600),
        ("sent", 0, t0 + 3601, t0 + 3601),
    ]
    assert json.loads(rows[0]["channels_json"]) == {"hook": "ok"}


def test_failed_delivery_is_retried_next_time(db_url: str) -> None:
    from openai_monitor.store import Store

    store = Store(db_url)
    with WebhookServer(responses=[500, 500]) as srv:
        settings = _settings(srv.url() + "?x", hook={"type": "webhook", "url": srv.url(), "retries": 1})
        settings.alerts["hook"]["backoff_seconds"] = 0.01
        first = dispatch(store.engine, settings, [ALERT], now=100)
        second = dispatch(store.engine, settings, [ALERT], now=200)
    assert first[0].status == "failed" and "HTTP 500" in first[0].channels["hook"]
    assert second[0].status == "sent"
    assert [r["status"] for r in _rows(store)] == ["failed", "sent"]


def test_severity_thresholds_global_and_per_channel(db_url: str) -> None:
    from openai_monitor.store import Store

    store = Store(db_url)
    low = Alert("stale", "stale:1", "low", "old data")
    medium = Alert("stale", "stale:2", "medium", "older data")
    with WebhookServer() as a, WebhookServer() as b:
        settings = Settings(
            alerts={
                "min_severity": "medium",
                "all": {"type": "webhook", "url": a.url()},
                "urgent": {"type": "webhook", "url": b.url(), "min_severity": "high"},
            }
        )
        out = dispatch(store.engine, settings, [low, medium, ALERT], now=10)
    assert [o.status for o in out] == ["below_threshold", "sent", "sent"]
    assert [r["body"]["dedup_key"] for r in a.requests] == ["stale:2", ALERT.dedup_key]
    assert [r["body"]["dedup_key"] for r in b.requests] == [ALERT.dedup_key]
    assert [r["dedup_key"] for r in _rows(store)] == ["stale:2", ALERT.dedup_key]


# -- CLI -------------------------------------------------------------------------------------------


def _write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def test_cli_alerts_test_and_list(run_cli, oaim_home: Path, db_url: str) -> None:
    from openai_monitor.store import Store

    with WebhookServer() as srv:
        _write_config(oaim_home, f'[alerts.slack]\ntype = "slack"\nurl = "{srv.url("/s")}"\n')
        r = run_cli("alerts", "test", "slack")
        assert r.exit_code == 0, r.stderr
        assert "test alert sent through slack" in r.stdout
        assert srv.requests[0]["body"]["text"].startswith("[INFO] openai-monitor test alert")

        r = run_cli("alerts", "test", "nope")
        assert r.exit_code == 2
        assert "no alert channel 'nope' (configured: slack)" in r.stderr

        from openai_monitor.config import load_settings

        dispatch(Store(db_url).engine, load_settings(), [ALERT], now=int(time.time()))
    r = run_cli("alerts", "list", "--json")
    assert r.exit_code == 0
    [row] = json.loads(r.stdout)
    assert (row["kind"], row["severity"], row["status"], row["channels"]) == (
        "anomaly",
        "high",
        "sent",
        {"slack": "ok"},
    )
    r = run_cli("alerts", "list")
    assert "Unusual spend on all usage" in r.stdout


def test_cli_alerts_test_reports_a_failing_channel(run_cli, oaim_home: Path) -> None:
    with WebhookServer(responses=[404]) as srv:
        _write_config(oaim_home, f'[alerts.d]\ntype = "discord"\nurl = "{srv.url()}"\n')
        r = run_cli("alerts", "test", "d")
    assert r.exit_code == 5
    assert r.stderr.startswith("error: channel d: webhook failed after 1 attempt(s): HTTP 404")
