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


def make_pricer(settings: Settings) -> Pricer:
    from ..pricing.engine import Pricer
    from ..pricing.update import load_snapshot

    return Pricer(overrides=settings.prices or None, snapshot=load_snapshot(user_snapshot_path()))
