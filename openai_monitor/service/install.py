"""Install the daemon as a per-user service: a systemd user unit (Linux) or a launchd agent (macOS)."""

from __future__ import annotations

import plistlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import atomic_write_text, default_database_url, home_dir, logs_dir
from ..errors import InputError

UNIT_NAME = "openai-monitor.service"
AGENT_LABEL = "com.openai-monitor.daemon"


@dataclass
class InstallResult:
    path: Path
    content: str
    start_hint: str
    stop_hint: str


def _platform(platform: str | None) -> str:
    p = platform or sys.platform
    if p.startswith("linux"):
        return "linux"
    if p == "darwin":
        return "darwin"
    raise InputError(
        f"`oaim daemon install` supports Linux (systemd) and macOS (launchd), not {p}; "
        "run `oaim daemon --foreground` from your own service manager instead"
    )


def _command() -> list[str]:
    # The interpreter of this installation: the unit keeps working when PATH differs under systemd.
    return [sys.executable, "-m", "openai_monitor", "daemon", "--foreground"]


def service_path(platform: str | None = None) -> Path:
    if _platform(platform) == "linux":
        return Path.home() / ".config" / "systemd" / "user" / UNIT_NAME
    return Path.home() / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"


def _env() -> dict[str, str]:
    env = {"OAIM_HOME": str(home_dir())}
    url = default_database_url()
    if url != f"sqlite:///{home_dir() / 'usage.db'}":
        env["OAIM_DATABASE_URL"] = url
    return env


def render(platform: str | None = None) -> str:
    if _platform(platform) == "linux":
        env_lines = "\n".join(f'Environment="{k}={v}"' for k, v in _env().items())
        return (
            "[Unit]\n"
            "Description=openai-monitor: collect LLM API usage, retrain forecasts, send alerts\n"
            "After=network-online.target\n\n"
            "[Service]\n"
            "Type=simple\n"
            f"ExecStart={shlex.join(_command())}\n"
            f"{env_lines}\n"
            "Restart=on-failure\n"
            "RestartSec=30\n"
            # SIGTERM lets the running job finish its transaction group; give it time before SIGKILL.
            "TimeoutStopSec=120\n\n"
            "[Install]\n"
            "WantedBy=default.target\n"
        )
    plist = {
        "Label": AGENT_LABEL,
        "ProgramArguments": _command(),
        "EnvironmentVariables": _env(),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "StandardErrorPath": str(logs_dir() / "launchd.err.log"),
        "StandardOutPath": str(logs_dir() / "launchd.out.log"),
    }
    return plistlib.dumps(plist).decode()


def install(platform: str | None = None) -> InstallResult:
    plat = _platform(platform)
    path = service_path(plat)
    content = render(plat)
    atomic_write_text(path, content, mode=0o644)
    if plat == "linux":
        start = "systemctl --user daemon-reload && systemctl --user enable --now openai-monitor"
        stop = "systemctl --user disable --now openai-monitor"
    else:
        start = f"launchctl load -w {path}"
        stop = f"launchctl unload -w {path}"
    return InstallResult(path, content, start, stop)


def uninstall(platform: str | None = None) -> Path | None:
    """Remove the unit/agent file. Returns its path, or None when none was installed."""
    path = service_path(platform)
    if not path.exists():
        return None
    path.unlink()
    return path
