"""Typed errors. Library code raises these; the CLI turns them into one-line messages and exit codes."""

from __future__ import annotations


class MonitorError(Exception):
    """An error whose message is shown to the user as is. The message names the fix."""

    exit_code: int = 1


class ConfigError(MonitorError):
    """The configuration file or an option is invalid."""

    exit_code = 2


class InputError(MonitorError):
    """A file, path or value given by the user cannot be used."""

    exit_code = 2


class StoreError(MonitorError):
    """The usage database cannot be opened or migrated."""

    exit_code = 3


class PricingError(MonitorError):
    """A price cannot be found, parsed or updated."""

    exit_code = 4


class CollectorError(MonitorError):
    """A remote collector (usage API, proxy upstream) failed."""

    exit_code = 5


class ModelError(MonitorError):
    """Trained models are missing, stale or cannot be loaded."""

    exit_code = 6
