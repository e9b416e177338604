"""Settings and paths: one home directory for all state, a TOML config file inside it.

``OAIM_HOME`` overrides the home directory (default ``~/.openai_monitor``); ``OAIM_DATABASE_URL`` (or the
``--db`` option) overrides the database URL (default: SQLite file ``usage.db`` in the home directory).

pydantic-settings is not used on purpose: it costs ~0.27 s of import time and read commands must answer in
under 0.5 s; the two environment variables are read explicitly here instead. The pydantic models of the
file (``Settings`` and its sections, in ``settings_model``) are imported only when a command loads the
whole file: importing pydantic and building them costs 0.17-0.2 s, so an import, which only needs the
``[prices]`` table (``load_prices``), does without them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .settings_model import Settings

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


_MODELS = ("Settings", "SourceConfig", "SourcesConfig", "ForecastConfig", "AnomalyConfig", "DaemonConfig")


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        from . import settings_model

        return getattr(settings_model, name)
    raise AttributeError(name)


def _read_toml(path: Path) -> dict[str, Any]:
    """The config file's content ({} when there is none); invalid TOML raises ConfigError naming the fix."""
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path}: invalid TOML ({e}); fix the file or run `oaim config path` to find it"
        ) from e


def load_prices(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Only the ``[prices]`` table of the config file (model -> price spec), checked as ``Settings``
    checks it, without building ``Settings``: what pricing needs."""
    path = path or config_path()
    prices = _read_toml(path).get("prices", {})
    if not isinstance(prices, dict):
        raise ConfigError(f"{path}: prices: must be a table; fix it with `oaim pricing set MODEL ...`")
    for model, spec in prices.items():
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{path}: prices.{model}: must be a table; fix it with `oaim pricing set {model} ...`"
            )
    return prices


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file (missing file: defaults). Invalid content raises ConfigError naming the fix."""
    from pydantic import ValidationError

    from .settings_model import Settings

    path = path or config_path()
    data = _read_toml(path)
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


# Top-level sections read from the model's extras (``Settings`` keeps unknown keys): the tier table overrides.
EXTRA_SECTIONS = ("tiers",)


def known_keys() -> list[str]:
    """The top-level keys of the config file that oaim reads."""
    from .settings_model import Settings

    return [*Settings.model_fields, *EXTRA_SECTIONS]


def key_hint(name: str) -> str:
    """What to say about an unknown top-level key: the closest known one, and the known keys."""
    import difflib

    known = known_keys()
    close = difflib.get_close_matches(name, known, n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + f"known keys: {', '.join(known)}"


def unknown_keys(settings: Settings) -> list[str]:
    """Top-level keys of a loaded config file that oaim does not read (typos, usually)."""
    return [k for k in (settings.model_extra or {}) if k not in EXTRA_SECTIONS]


def set_value(key: str, raw: str, path: Path | None = None) -> Settings:
    """Set a dotted KEY in the config file, validating the whole result before writing it atomically."""
    import tomli_w
    from pydantic import ValidationError

    from .settings_model import Settings

    path = path or config_path()
    parts = key.split(".")
    if parts[0] not in known_keys():
        raise ConfigError(f"unknown config key {parts[0]!r}; {key_hint(parts[0])}")
    data: dict[str, Any] = {}
    if path.exists():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
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
