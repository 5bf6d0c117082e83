"""The state one connection carries, passed explicitly to every module function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opskit.common.config import Settings

if TYPE_CHECKING:
    from opskit.backend.db import Database


@dataclass
class Context:
    """A database plus the settings that say how to reach Stripe and how carefully to write."""

    db: Database
    settings: Settings

    @property
    def api_base(self) -> str | None:
        return self.settings.stripe_api_base
