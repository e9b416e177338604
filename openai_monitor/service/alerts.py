"""Alerts: findings (anomalies, budgets, forecasts, collection health) sent to configured channels.

Channels are sections of ``[alerts]`` in the config file, each with a ``type``::

    [alerts]
    min_severity = "medium"        # findings below this are recorded nowhere and sent nowhere
    cooldown_minutes = 1440        # the same finding (dedup key) is not sent again within this time;
                                   # a condition that persists (stale data, limit) is re-sent after it

    [alerts.slack]
    type = "slack"                 # slack | discord | webhook (generic JSON POST)
    url = "https://hooks.slack.com/services/..."
    timeout_seconds = 10
    retries = 3                    # extra attempts after a 5xx, 429 or connection error
    min_severity = "high"          # optional, per channel

    [alerts.email]
    type = "email"
    host = "smtp.example.com"
    port = 587
    starttls = true                # or ssl = true for SMTPS (port 465)
    username = "me@example.com"
    password_env = "OAIM_SMTP_PASSWORD"   # the password is read from this environment variable
    from = "oaim@example.com"
    to = ["me@example.com"]

    [alerts.desktop]
    type = "desktop"               # desktop-notifier: D-Bus on Linux, Notification Center, WinRT

Every alert sent is a row of the ``alerts`` table; one whose dedup key was sent within the cooldown is
not sent again (the earlier row's ``repeats`` counter is bumped instead).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MonitorError

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("openai_monitor.alerts")

SEVERITIES = ("info", "low", "medium", "high", "critical")
CHANNEL_TYPES = ("desktop", "slack", "discord", "webhook", "email")
DEFAULT_MIN_SEVERITY = "medium"
DEFAULT_COOLDOWN_MINUTES = 1440.0
# Discord embed colours by severity (decimal RGB).
_DISCORD_COLOURS = {
    "info": 0x5865F2,
    "low": 0x57F287,
    "medium": 0xFEE75C,
    "high": 0xED4245,
    "critical": 0x992D22,
}


class AlertError(MonitorError):
    """A channel could not deliver an alert."""

    exit_code = 5


@dataclass(frozen=True)
class Alert:
    """One finding to tell the user about. ``dedup_key`` identifies the finding across runs."""

    kind: str
    dedup_key: str
    severity: str
    title: str
    body: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dedup_key": self.dedup_key,
            "severity": self.severity,
            "title": self.title,
            "body": self.body,
            "data": self.data,
        }


def severity_rank(severity: str) -> int:
    try:
        return SEVERITIES.index(severity.lower())
    except ValueError:
        raise ConfigError(f"unknown severity {severity!r}; use one of {', '.join(SEVERITIES)}") from None


# -- channels ---------------------------------------------------------------------------------------


class Channel:
    """A destination. ``send`` raises AlertError when the alert was not delivered."""

    type: str = ""

    def __init__(self, name: str, conf: dict[str, Any]):
        self.name = name
        self.conf = conf
        self.min_severity = str(conf.get("min_severity", "info"))
        severity_rank(self.min_severity)

    def accepts(self, alert: Alert) -> bool:
        return severity_rank(alert.severity) >= severity_rank(self.min_severity)

    def send(self, alert: Alert) -> None:
        raise AlertError(f"channel {self.name}: type {self.type!r} cannot send")


class WebhookChannel(Channel):
    """Slack / Discord incoming webhooks, or a generic JSON POST, with a timeout and retries."""

    def __init__(self, name: str, conf: dict[str, Any]):
        super().__init__(name, conf)
        self.type = str(conf.get("type"))
        self.url = conf.get("url")
        if not self.url or not str(self.url).startswith(("http://", "https://")):
            raise ConfigError(
                f"alerts.{name}.url must be an http(s) URL; set it with `oaim config set alerts.{name}.url URL`"
            )
        self.timeout = float(conf.get("timeout_seconds", 10))
        self.retries = int(conf.get("retries", 3))
        self.backoff = float(conf.get("backoff_seconds", 1.0))
        self.headers = {str(k): str(v) for k, v in dict(conf.get("headers", {})).items()}

    def payload(self, alert: Alert) -> dict[str, Any]:
        if self.type == "slack":
            return {
                "text": f"[{alert.severity.upper()}] {alert.title}\n{alert.body}".strip(),
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
                    {
                        "type": "section",
                        "text": {"type": "mrkdwn", "text": f"*{alert.severity}* · {alert.body}"[:3000]},
                    },
                ],
            }
        if self.type == "discord":
            return {
                "content": f"[{alert.severity.upper()}] {alert.title}"[:2000],
                "embeds": [
                    {
                        "title": alert.title[:256],
                        "description": alert.body[:4096],
                        "color": _DISCORD_COLOURS.get(alert.severity, 0),
                        "footer": {"text": alert.dedup_key[:2048]},
                    }
                ],
            }
        return {"source": "openai-monitor", "sent_at": int(time.time()), **alert.as_dict()}

    def send(self, alert: Alert) -> None:
        import httpx

        body = self.payload(alert)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                r = httpx.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if r.status_code < 300:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
            # A 4xx other than 429 will not get better by retrying (bad URL, revoked webhook).
            if r.status_code < 500 and r.status_code != 429:
                break
        raise AlertError(
            f"channel {self.name}: webhook failed after {attempt + 1} attempt(s): {last}; "
            f"check alerts.{self.name}.url"
        )


class EmailChannel(Channel):
    """SMTP with STARTTLS (or SMTPS) and login; the password comes from an environment variable."""

    type = "email"

    def __init__(self, name: str, conf: dict[str, Any]):
        super().__init__(name, conf)
        missing = [k for k in ("host", "to") if not conf.get(k)]
        if missing:
            raise ConfigError(
                f"alerts.{name}: missing {', '.join(missing)}; set with `oaim config set alerts.{name}.{missing[0]} VALUE`"
            )
        self.host = str(conf["host"])
        self.ssl = bool(conf.get("ssl", False))
        self.port = int(conf.get("port", 465 if self.ssl else 587))
        self.starttls = bool(conf.get("starttls", not self.ssl))
        self.username = conf.get("username")
        self.password_env = conf.get("password_env")
        to = conf["to"]
        self.to = [to] if isinstance(to, str) else [str(t) for t in to]
        self.sender = str(conf.get("from") or self.username or "openai-monitor@localhost")
        self.timeout = float(conf.get("timeout_seconds", 20))
        self.ca_file = conf.get("ca_file")

    def _password(self) -> str | None:
        if not self.username:
            return None
        if not self.password_env:
            raise ConfigError(
                f"alerts.{self.name}.password_env is not set; name the environment variable holding the "
                f"SMTP password: `oaim config set alerts.{self.name}.password_env OAIM_SMTP_PASSWORD`"
            )
        pw = os.environ.get(str(self.password_env))
        if pw is None:
            raise AlertError(f"channel {self.name}: environment variable {self.password_env} is not set")
        return pw

    def send(self, alert: Alert) -> None:
        import smtplib
        import ssl
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["Subject"] = f"[oaim {alert.severity}] {alert.title}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg.set_content(
            f"{alert.title}\n\n{alert.body}\n\nseverity: {alert.severity}\nkey: {alert.dedup_key}\n"
        )
        context = (
            ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
        )
        password = self._password()
        try:
            if self.ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls and not self.ssl:
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(str(self.username), password or "")
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as e:
            raise AlertError(
                f"channel {self.name}: SMTP {self.host}:{self.port} failed: {type(e).__name__}: {e}; "
                f"check alerts.{self.name}.host/port/username and {self.password_env or 'the password'}"
            ) from e


class DesktopChannel(Channel):
    """desktop-notifier: org.freedesktop.Notifications over D-Bus on Linux, native on macOS/Windows."""

    type = "desktop"

    def __init__(self, name: str, conf: dict[str, Any]):
        super().__init__(name, conf)
        self.app_name = str(conf.get("app_name", "openai-monitor"))
        self.timeout = float(conf.get("timeout_seconds", 10))

    def send(self, alert: Alert) -> None:
        import asyncio

        # desktop-notifier only logs a warning when sending fails; its "dispatched" callback is the
        # one signal that the notification server accepted it.
        dispatched: list[bool] = []

        async def _send() -> None:
            from desktop_notifier import DesktopNotifier, Urgency

            urgency = Urgency.Critical if severity_rank(alert.severity) >= 3 else Urgency.Normal
            notifier = DesktopNotifier(app_name=self.app_name, app_icon=None)
            try:
                await notifier.send(
                    title=alert.title,
                    message=alert.body or alert.title,
                    urgency=urgency,
                    on_dispatched=lambda: dispatched.append(True),
                )
            finally:
                bus = getattr(notifier._backend, "bus", None)
                if bus is not None:
                    bus.disconnect()

        try:
            asyncio.run(asyncio.wait_for(_send(), self.timeout))
        except (asyncio.TimeoutError, OSError) as e:
            raise AlertError(f"channel {self.name}: desktop notification timed out or failed: {e}") from e
        if not dispatched:
            raise AlertError(
                f"channel {self.name}: no desktop notification server answered (on Linux a D-Bus session "
                "with org.freedesktop.Notifications is needed; check DBUS_SESSION_BUS_ADDRESS)"
            )


_CHANNEL_CLASSES: dict[str, type[Channel]] = {
    "desktop": DesktopChannel,
    "slack": WebhookChannel,
    "discord": WebhookChannel,
    "webhook": WebhookChannel,
    "email": EmailChannel,
}


def alert_options(settings: Settings) -> tuple[str, float]:
    """(global min_severity, cooldown seconds) from ``[alerts]``."""
    conf = settings.alerts or {}
    min_sev = str(conf.get("min_severity", DEFAULT_MIN_SEVERITY))
    severity_rank(min_sev)
    cooldown = float(conf.get("cooldown_minutes", DEFAULT_COOLDOWN_MINUTES)) * 60
    return min_sev, cooldown


def channels_from_settings(settings: Settings) -> dict[str, Channel]:
    """Every ``[alerts.NAME]`` section with a ``type``, built and validated (ConfigError names the key)."""
    out: dict[str, Channel] = {}
    for name, conf in (settings.alerts or {}).items():
        if not isinstance(conf, dict):
            continue
        if conf.get("enabled", True) is False:
            continue
        kind = conf.get("type")
        if kind not in _CHANNEL_CLASSES:
            raise ConfigError(
                f"alerts.{name}.type must be one of {', '.join(CHANNEL_TYPES)}; "
                f"set it with `oaim config set alerts.{name}.type slack`"
            )
        out[name] = _CHANNEL_CLASSES[kind](name, conf)
    return out


# -- dispatch and history ---------------------------------------------------------------------------


@dataclass
class Outcome:
    alert: Alert
    status: str  # sent | partial | failed | no_channel | suppressed | below_threshold
    channels: dict[str, str] = field(default_factory=dict)
    alert_id: int | None = None


def _recent_sent(conn: Any, key: str, since: int) -> int | None:
    from sqlalchemy import text

    row = conn.execute(
        text(
            "SELECT id FROM alerts WHERE dedup_key = :k AND created_at >= :since "
            "AND status IN ('sent', 'partial', 'no_channel') ORDER BY created_at DESC LIMIT 1"
        ),
        {"k": key, "since": since},
    ).first()
    return None if row is None else int(row[0])


def dispatch(
    engine: Any,
    settings: Settings,
    alerts: Iterable[Alert],
    *,
    now: int | None = None,
    channels: dict[str, Channel] | None = None,
) -> list[Outcome]:
    """Send each alert to every channel that accepts its severity, once per cooldown, and record it.

    A failed delivery is recorded as ``failed`` (or ``partial``) and does not count against the cooldown,
    so the next check retries it.
    """
    from sqlalchemy import text

    now = int(time.time()) if now is None else now
    min_sev, cooldown = alert_options(settings)
    chans = channels_from_settings(settings) if channels is None else channels
    outcomes: list[Outcome] = []
    for alert in alerts:
        if severity_rank(alert.severity) < severity_rank(min_sev):
            outcomes.append(Outcome(alert, "below_threshold"))
            continue
        with engine.begin() as conn:
            prev = _recent_sent(conn, alert.dedup_key, now - int(cooldown))
            if prev is not None:
                conn.execute(
                    text("UPDATE alerts SET repeats = repeats + 1, last_seen_at = :t WHERE id = :id"),
                    {"t": now, "id": prev},
                )
        if prev is not None:
            outcomes.append(Outcome(alert, "suppressed", alert_id=prev))
            continue
        results: dict[str, str] = {}
        for name, ch in chans.items():
            if not ch.accepts(alert):
                continue
            try:
                ch.send(alert)
                results[name] = "ok"
            except MonitorError as e:
                results[name] = str(e)
                log.warning(
                    "alert not delivered", extra={"channel": name, "key": alert.dedup_key, "error": str(e)}
                )
            except Exception as e:  # a channel library bug must not lose the other channels
                results[name] = f"{type(e).__name__}: {e}"
                log.exception("alert channel crashed", extra={"channel": name})
        ok = sum(1 for v in results.values() if v == "ok")
        if not results:
            status = "no_channel"
        elif ok == len(results):
            status = "sent"
        elif ok:
            status = "partial"
        else:
            status = "failed"
        with engine.begin() as conn:
            alert_id = conn.execute(
                text(
                    "INSERT INTO alerts (dedup_key, kind, severity, title, body, data_json, created_at, "
                    "last_seen_at, repeats, status, channels_json) VALUES (:k, :kind, :sev, :title, :body, "
                    ":data, :t, :t, 0, :status, :ch) RETURNING id"
                ),
                {
                    "k": alert.dedup_key,
                    "kind": alert.kind,
                    "sev": alert.severity,
                    "title": alert.title,
                    "body": alert.body,
                    "data": json.dumps(alert.data, default=str),
                    "t": now,
                    "status": status,
                    "ch": json.dumps(results),
                },
            ).scalar_one()
        log.info("alert", extra={"key": alert.dedup_key, "status": status, "channels": results})
        outcomes.append(Outcome(alert, status, results, int(alert_id)))
    return outcomes


def list_alerts(reader: Any, limit: int = 50) -> list[dict[str, Any]]:
    """Alert history, newest first, through a FastReader (no SQLAlchemy import)."""
    if not reader.table_exists("alerts"):
        return []
    rows = reader.query(
        "SELECT id, created_at, last_seen_at, repeats, kind, severity, status, dedup_key, title, body, "
        "channels_json FROM alerts ORDER BY created_at DESC, id DESC LIMIT ?",
        (int(limit),),
    )
    keys = (
        "id",
        "created_at",
        "last_seen_at",
        "repeats",
        "kind",
        "severity",
        "status",
        "dedup_key",
        "title",
        "body",
    )
    out = []
    for r in rows:
        d = dict(zip(keys, r[:10]))
        d["channels"] = json.loads(r[10] or "{}")
        out.append(d)
    return out


def sample_alert(now: int | None = None) -> Alert:
    """The message `oaim alerts test CHANNEL` sends."""
    now = int(time.time()) if now is None else now
    return Alert(
        kind="test",
        dedup_key=f"test:{now}",
        severity="info",
        title="openai-monitor test alert",
        body="If you can read this, the channel works.",
    )
