"""Every test runs against its own home directory (config, SQLite database, models) under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(autouse=True)
def oaim_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "oaim_home"
    monkeypatch.setenv("OAIM_HOME", str(home))
    monkeypatch.delenv("OAIM_DATABASE_URL", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    # Keep the CLI tools' default log locations inside the test's tmp dir.
    monkeypatch.setenv("HOME", str(tmp_path / "user_home"))
    for var in (
        "CLAUDE_CONFIG_DIR",
        "CODEX_HOME",
        "GEMINI_DATA_DIR",
        "OPENAI_ADMIN_KEY",
        "ANTHROPIC_ADMIN_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def db_url(oaim_home: Path) -> str:
    return f"sqlite:///{oaim_home / 'usage.db'}"


@pytest.fixture
def run_cli():
    """Invoke the real Typer app: run_cli("summary", "--json") -> CliResult (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from openai_monitor.cli import app

    def _run(*args: str, input: str | None = None):
        runner = CliRunner()
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return _run


def shared_data(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"{p} missing: the shared data directory must sit beside the repository")
    return p


os.environ.setdefault("OAIM_TESTING", "1")
