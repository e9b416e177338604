"""The config file's pydantic models (imported lazily through ``config``: see its docstring)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .config import PLANS, WEEKDAYS, system_timezone


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
