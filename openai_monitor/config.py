"""Settings and paths: one home directory for all state, a TOML config file inside it.

``OAIM_HOME`` overrides the home directory (default ``~/.openai_monitor``); ``OAIM_DATABASE_URL`` (or the
``--db`` option) overrides the database URL (default: SQLite file ``usage.db`` in the home directory).

pydantic-settings is not used on purpose: it costs ~0.27 s of import time and read commands must answer in
under 0.5 s; the two environment variables are read explicitly here instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILENAME = "config.toml"
PLANS = ("free", "tier1", "tier2", "tier3", "tier4", "tier5", "auto", "custom")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def home_dir() -> Path:
    """The one directory holding the database, trained models, config and logs."""
    env = os.environ.get("OAIM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".openai_monitor"


def config_path() -> Path:
    return home_dir() / CONFIG_FILENAME


def models_dir() -> Path:
    return home_dir() / "models"


def logs_dir() -> Path:
    return home_dir() / "logs"


def default_database_url() -> str:
    env = os.environ.get("OAIM_DATABASE_URL")
    if env:
        return env
    return f"sqlite:///{home_dir() / 'usage.db'}"


def system_timezone() -> str:
    """Best effort IANA name of the machine's zone (TZ, /etc/timezone, /etc/localtime), else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and ("/" in tz or tz == "UTC"):
        return tz
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class SourceConfig(_Section):
    enabled: bool = True
    paths: list[str] = Field(default_factory=list)  # empty: the tool's default locations


class SourcesConfig(_Section):
    claude_code: SourceConfig = Field(default_factory=SourceConfig)
    codex: SourceConfig = Field(default_factory=SourceConfig)
    gemini: SourceConfig = Field(default_factory=SourceConfig)
    csv: SourceConfig = Field(default_factory=lambda: SourceConfig(enabled=False))


class ForecastConfig(_Section):
    holidays_country: str | None = None
    horizon_days: int = 30


class AnomalyConfig(_Section):
    contamination: float = 0.01
    score_threshold: float | None = None
    min_severity_alert: str = "medium"


class DaemonConfig(_Section):
    collect_minutes: int = 15
    retrain_time: str = "03:00"
    stale_hours: float = 24.0


class Settings(BaseModel):
    """The config file's content. Unknown keys are kept (later features add sections)."""

    model_config = ConfigDict(extra="allow")

    plan: str = "tier1"
    limit_usd: float | None = None  # custom monthly limit; overrides the plan's
    timezone: str = Field(default_factory=system_timezone)
    currency: str = "USD"
    currency_rate: float = 1.0  # display multiplier from USD
    week_start: str = "monday"
    total_paid_usd: float | None = None
    first_payment_date: str | None = None
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    prices: dict[str, dict[str, Any]] = Field(default_factory=dict)  # model -> {input, output, ...} per 1M
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    alerts: dict[str, Any] = Field(default_factory=dict)
    budgets: dict[str, Any] = Field(default_factory=dict)

    @field_validator("plan")
    @classmethod
    def _plan(cls, v: str) -> str:
        if v not in PLANS:
            raise ValueError(f"plan must be one of {', '.join(PLANS)}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown timezone {v!r}; use an IANA name such as Europe/Berlin") from e
        return v

    @field_validator("week_start")
    @classmethod
    def _week(cls, v: str) -> str:
        if v.lower() not in WEEKDAYS:
            raise ValueError(f"week_start must be one of {', '.join(WEEKDAYS)}")
        return v.lower()


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file (missing file: defaults). Invalid content raises ConfigError naming the fix."""
    path = path or config_path()
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"{path}: invalid TOML ({e}); fix the file or run `oaim config path` to find it"
            ) from e
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {loc}: {err['msg']}; fix it with `oaim config set {loc} VALUE`") from e


def _parse_value(raw: str) -> Any:
    """Interpret a command-line value as TOML when it parses (numbers, booleans, arrays), else a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def set_value(key: str, raw: str, path: Path | None = None) -> Settings:
    """Set a dotted KEY in the config file, validating the whole result before writing it atomically."""
    import tomli_w

    path = path or config_path()
    data: dict[str, Any] = {}
    if path.exists():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: {p} is not a section; choose another key")
        node = nxt
    node[parts[-1]] = _parse_value(raw)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{key}: {err['msg']}") from e
    atomic_write_text(path, tomli_w.dumps(data))
    return settings


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    """Write a file atomically: a temp file in the same directory, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
