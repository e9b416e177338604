"""Build the Pricer the user configured: the user's updated snapshot (if any) plus config overrides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import home_dir

if TYPE_CHECKING:
    from ..config import Settings
    from ..pricing.engine import Pricer


def user_snapshot_path():
    from ..pricing.update import USER_SNAPSHOT_NAME

    return home_dir() / USER_SNAPSHOT_NAME


def make_pricer(settings: Settings | None = None) -> Pricer:
    """The Pricer of SETTINGS, or of the config file's ``[prices]`` alone when no settings are given
    (an import: nothing else of the config is needed, and loading it whole costs 0.17-0.2 s)."""
    from ..config import load_prices
    from ..pricing.engine import Pricer
    from ..pricing.update import load_snapshot

    prices = settings.prices if settings is not None else load_prices()
    return Pricer(overrides=prices or None, snapshot=load_snapshot(user_snapshot_path()))
