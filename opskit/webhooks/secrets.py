"""Each shop's webhook signing secrets (``whsec_...``), kept like the shops' secret keys.

They live in opskit's own table ``opskit_webhook_secrets`` in the database
(readable by whoever can read the shops' keys, and by nobody else through
opskit): only the receiver reads them unmasked, to verify; every listing shows
``whsec_…abcd``. A shop may have several at once: Stripe signs with the new
secret after a roll (and, for a grace period you choose, with the old one too);
add the new one, and remove the old one (or give it ``expires_at``) when the
grace period ends.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from opskit.backend.state import state_for
from opskit.common.exceptions import InputError, UnknownShop
from opskit.webhooks.receiver import _shop, canonical_id

if TYPE_CHECKING:
    from opskit.ops import Ops

__all__ = ["add_secret", "list_secrets", "remove_secret"]

_SECRET = re.compile(r"^whsec_[A-Za-z0-9_+/=\-]{8,}$")


def _shop_text(ops: Ops, shop_id: Any) -> str:
    try:
        text = canonical_id(shop_id)
    except TypeError:
        raise UnknownShop(f"{shop_id!r} is not a shop id") from None
    if _shop(ops, text) is None:
        raise UnknownShop(f"no shop with id {shop_id!r}")
    return text


def add_secret(ops: Ops, shop_id: Any, secret: str, expires_at: datetime | None = None) -> None:
    """Accept deliveries for ``shop_id`` signed with ``secret`` (besides its others)."""
    secret = (secret or "").strip()
    if not _SECRET.match(secret):
        raise InputError(
            "that is not a webhook signing secret",
            guidance="Copy the endpoint's signing secret (whsec_...) from the shop's Stripe "
            "dashboard, Developers > Webhooks.",
        )
    state_for(ops.ctx.db).add_secret(_shop_text(ops, shop_id), secret, expires_at)


def remove_secret(ops: Ops, shop_id: Any, secret: str | None = None) -> int:
    """Stop accepting one secret (given whole or masked as listed), or all of the shop's."""
    return state_for(ops.ctx.db).remove_secrets(_shop_text(ops, shop_id), secret)


def list_secrets(ops: Ops) -> pd.DataFrame:
    """Every shop's signing secrets, masked: shop_id, secret, added_at, expires_at."""
    return state_for(ops.ctx.db).secrets_frame()
