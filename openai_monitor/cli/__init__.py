"""The Typer app behind ``openai-monitor``, ``oaimonitor`` and ``oaim``: the one error boundary.

Commands live in feature modules (``cli/<area>.py``), each exposing ``register(app)``; only the module of
the command being run is loaded and built (``COMMANDS``). With no command, the program runs the live
monitor (``openai-monitor --plan tier2``)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import MonitorError
from .common import AppState, debug_enabled

# Each command (or group of commands) and the module that registers it, in the order ``--help`` lists
# them. Building the click commands of all fifty took 0.026 s of every start (Typer reads each
# function's signature and annotations); a command now builds its own module's only. A test checks this
# map against what the modules register.
COMMANDS: dict[str, str] = {
    "log": "core",
    "models": "core",
    "reset": "core",
    "doctor": "core",
    "demo": "core",
    "summary": "reports",
    "daily": "reports",
    "weekly": "reports",
    "monthly": "reports",
    "train": "ml",
    "forecast": "ml",
    "monitor": "monitor",
    "tier": "monitor",
    "recommend": "monitor",
    "patterns": "insights",
    "export": "insights",
    "report": "insights",
    "reconcile": "collectors",
    "precedence": "collectors",
    "proxy": "proxy",
    "estimate": "proxy",
    "import": "core",
    "config": "core",
    "pricing": "core",
    "anomalies": "ml",
    "budget": "monitor",
    "daemon": "service",
    "alerts": "service",
    "sync": "collectors",
    "keys": "collectors",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))

# Exit codes shared by every command (the monitor adds its own in cli/monitor.py).
EXIT_ERROR = 1
EXIT_INTERNAL = 70


class BoundaryGroup(TyperGroup):
    """Turns typed errors into a one-line message and an exit code; never a traceback for users. Builds
    a command's module when the command is first looked up."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        self.load_all()
        order = {name: i for i, name in enumerate(COMMANDS)}
        return sorted(self.commands, key=lambda n: order.get(n, len(order)))

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            if cmd_name in COMMANDS:
                self.load(COMMANDS[cmd_name])
            else:  # a typo: every name, for the "did you mean" suggestion
                self.load_all()
        return self.commands.get(cmd_name)

    def load_all(self) -> None:
        for module in COMMAND_MODULES:
            self.load(module)

    def load(self, module: str) -> None:
        """Add the commands that ``cli/<module>.py`` registers (once)."""
        loaded = self.__dict__.setdefault("_loaded_modules", set())
        if module in loaded:
            return
        loaded.add(module)
        part = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
        importlib.import_module(f"{__name__}.{module}").register(part)
        from typer.main import get_group

        for name, cmd in get_group(part).commands.items():
            self.commands.setdefault(name, cmd)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MonitorError as e:
            typer.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            if _is_click_control(e) or debug_enabled():
                raise
            typer.echo(
                f"internal error: {type(e).__name__}: {e} (set OAIM_DEBUG=1 for a traceback and report it)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


def _is_click_control(e: BaseException) -> bool:
    # Typer >= 0.20 vendors click; match its control-flow exceptions by class name to support both.
    return any(c.__name__ in ("ClickException", "Exit", "Abort") for c in type(e).__mro__)


app = typer.Typer(
    cls=BoundaryGroup,
    help="Track, forecast and explain what you spend on LLM APIs (OpenAI, Anthropic, Gemini, Mistral).",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openai-monitor {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    db: str | None = typer.Option(None, "--db", envvar="OAIM_DATABASE_URL", help="SQLAlchemy database URL."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
    plan: str | None = typer.Option(None, "--plan", help="Monitor: free|tier1..tier5|auto|custom."),
    limit: float | None = typer.Option(None, "--limit", help="Monitor: monthly limit in USD (custom plan)."),
    timezone: str | None = typer.Option(None, "--timezone", help="Monitor: IANA time zone for days/months."),
    refresh: float = typer.Option(10.0, "--refresh", help="Monitor: seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Monitor: print one frame and exit."),
    json_out: bool = typer.Option(False, "--json", help="Monitor: print the figures as JSON and exit."),
) -> None:
    st = ctx.ensure_object(AppState)
    st.db_url = db
    st.extra["monitor_opts"] = {
        "plan": plan,
        "limit": limit,
        "timezone": timezone,
        "refresh": refresh,
        "once": once,
        "json_out": json_out,
    }
    if ctx.invoked_subcommand is None:
        default = default_command(ctx)
        if default is None:
            typer.echo(ctx.get_help())
            raise typer.Exit()
        default(ctx, **st.extra["monitor_opts"])


_DEFAULT: dict[str, Any] = {}


def set_default_command(fn: Any) -> None:
    """Register the function run when no command is given (the live monitor)."""
    _DEFAULT["fn"] = fn


def default_command(ctx: typer.Context) -> Any:
    """The function run when no command is given (the live monitor, also shown by ``oaim demo``), with the
    module that registers it loaded first: commands are loaded lazily, one module at a time."""
    root = ctx.find_root().command
    if isinstance(root, BoundaryGroup):
        root.load(COMMANDS["monitor"])
    return _DEFAULT.get("fn")


def main() -> None:
    try:
        app(prog_name=_prog_name())
    finally:
        # Nothing is left to collect when a command ends, but the interpreter's last collections would
        # still walk every object the command and its imports made (0.11-0.13 s after importing 210 MB
        # of Claude logs, 0.02 s frozen). Finalisers and atexit handlers still run.
        import gc

        gc.freeze()


def _prog_name() -> str:
    import os

    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "oaim"
