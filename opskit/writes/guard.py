"""The live-mode guard: a write with a live key needs an explicit yes.

Test keys need nothing. A live key's write goes through only with
``confirm=True`` on the call or ``OPSKIT_ALLOW_LIVE_WRITES=1`` (read into
``ctx.settings.allow_live_writes`` by :func:`opskit.connect`); otherwise
:class:`~opskit.common.exceptions.LiveWriteRefused` is raised before any request and
the refusal is audited (outcome ``refused``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from opskit.backend import audit
from opskit.common.context import Context
from opskit.common.exceptions import LiveWriteRefused, OpskitError
from opskit.common.models import Shop

__all__ = ["check_live_write"]

log = logging.getLogger(__name__)


def check_live_write(
    ctx: Context,
    shop: Shop,
    *,
    confirm: bool,
    actor: str,
    action: str,
    target: str,
    params: Mapping[str, Any],
    idempotency_key: str | None = None,
) -> None:
    """Return when the write may go ahead; else audit the refusal and raise."""
    if shop.mode != "live" or confirm is True or ctx.settings.allow_live_writes:
        return
    label = f"shop {shop.id}" + (f" ({shop.name})" if shop.name else "")
    exc = LiveWriteRefused(
        f"{action} on {target}: {label} uses a live Stripe key "
        f"[{shop.key_info.masked}]; refused without confirmation, nothing was sent"
    )
    try:
        audit.append(
            ctx.db,
            actor=actor,
            shop_id=shop.id,
            action=action,
            target=target,
            params=params,
            idempotency_key=idempotency_key,
            outcome="refused",
            error=exc.message,
        )
    except (SQLAlchemyError, OpskitError) as failed:  # refused all the same: nothing sent
        log.error("could not audit the refusal of %s on %s: %s", action, target, failed)
    raise exc
