"""Small test helpers shared by several test modules."""

from __future__ import annotations

from openai_monitor.domain import UsageRecord


def cost_record(
    ts: int,
    cost: float,
    key: str,
    *,
    model: str = "gpt-4o",
    user: str = "ann",
    project: str = "",
    reported: bool = False,
) -> UsageRecord:
    """One OpenAI call of 1,000 input / 100 output tokens costing ``cost`` (billed when ``reported``)."""
    return UsageRecord(
        ts=ts,
        provider="openai",
        model=model,
        dedup_key=key,
        user=user,
        project=project,
        input_tokens=1000,
        output_tokens=100,
        cost_usd=cost,
        cost_reported=reported,
    )
