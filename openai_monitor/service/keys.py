"""Admin-key store: one JSON file ``keys.json`` in the home directory, mode 0600, written atomically.

Keys are never logged, never written to the usage database and never echoed back: ``list_keys`` shows a
short SHA-256 fingerprint only. An environment variable always wins over the stored key, so CI and
containers need no file at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from ..config import atomic_write_text, home_dir
from ..errors import ConfigError

KEYS_FILENAME = "keys.json"
# Key name -> environment variable read first.
KNOWN_KEYS = {"openai-admin": "OPENAI_ADMIN_KEY", "anthropic-admin": "ANTHROPIC_ADMIN_KEY"}


def keys_path() -> Path:
    return home_dir() / KEYS_FILENAME


def fingerprint(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _load() -> dict[str, str]:
    path = keys_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by other users; run `chmod 600 {path}` and try again")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot read the key store {path}: {e}; remove it and run `oaim keys set`"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"the key store {path} is damaged; remove it and run `oaim keys set` again")
    return data


def _save(data: dict[str, str]) -> None:
    atomic_write_text(keys_path(), json.dumps(data, indent=1, sort_keys=True), mode=0o600)


def _check_name(name: str) -> None:
    if name not in KNOWN_KEYS:
        raise ConfigError(f"unknown key name {name!r}; use one of: {', '.join(KNOWN_KEYS)}")


def set_key(name: str, value: str) -> None:
    """Store ``value`` under ``name`` (file mode 0600)."""
    _check_name(name)
    value = value.strip()
    if not value or any(c.isspace() for c in value):
        raise ConfigError("the key is empty or contains spaces; paste the key alone")
    data = _load()
    data[name] = value
    _save(data)


def remove_key(name: str) -> bool:
    """Remove a stored key; False when there was none."""
    data = _load()
    if name not in data:
        return False
    del data[name]
    _save(data)
    return True


def list_keys() -> list[dict[str, str]]:
    """Stored and environment keys with where each comes from and a fingerprint, never the key."""
    data = _load()
    rows = []
    for name, env in KNOWN_KEYS.items():
        if os.environ.get(env):
            rows.append({"name": name, "source": f"env {env}", "fingerprint": fingerprint(os.environ[env])})
        if name in data:
            rows.append({"name": name, "source": str(keys_path()), "fingerprint": fingerprint(data[name])})
    return rows


def get_key(name: str) -> str | None:
    """The key from its environment variable, else from the store, else None."""
    _check_name(name)
    env = os.environ.get(KNOWN_KEYS[name], "").strip()
    if env:
        return env
    return _load().get(name)
