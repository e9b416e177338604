"""Small test helpers shared by several test modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from openai_monitor.domain import UsageRecord

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def gen_claude_logs(out: Path, size: str, *options: str) -> Path:
    """Claude Code logs written into OUT by ``../shared/tools/gen_claude_logs.py`` (with its
    ``ground_truth.json``); OPTIONS are the generator's own (``--continue-p 0.6`` ...)."""
    subprocess.run(
        [
            sys.executable,
            str(SHARED / "tools" / "gen_claude_logs.py"),
            "--out",
            str(out),
            "--size",
            size,
            *options,
        ],
        check=True,
        capture_output=True,
    )
    return out


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
