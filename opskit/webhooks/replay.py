"""Processing stored deliveries again: those that failed or were never finished.

A delivery is replayable when its signature was good when it arrived (outcome
``accepted``: the process stopped before finishing it; ``failed``: processing
raised). Its stored body is processed exactly as on arrival; the event id makes
it idempotent, so a replay of an already-applied event is a ``duplicate``.
Rejected deliveries (forged, unsigned, expired, unknown shop, a body that is no
applicable event) are never replayed; a body found unapplicable on replay (stored
by an older opskit, or its shop removed since) becomes rejected then.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from opskit.backend.state import state_for
from opskit.common.ids import id_list
from opskit.common.keys import redact
from opskit.common.stripe_errors import describe_error
from opskit.core import event_checks
from opskit.webhooks.receiver import _shop, canonical_id, check_delivery
from opskit.writes.refresh import process_event

if TYPE_CHECKING:
    from opskit.ops import Ops

__all__ = ["REPLAYABLE", "deliveries", "replay"]

REPLAYABLE = ("accepted", "failed")


def replay(
    ops: Ops,
    shop_ids: Iterable[Any] | None = None,
    delivery_ids: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Process the replayable deliveries again; one row per delivery tried.

    Columns: ``delivery_id`` (Int64), ``shop_id``, ``event_id``, ``event_type``,
    ``outcome`` (processed / duplicate / failed / rejected), ``detail`` (strings).
    Each body is checked as on arrival (:func:`~opskit.webhooks.receiver.check_delivery`,
    at its receipt time): one that can never be applied (not an event, a bad
    envelope or object, the shop gone) becomes ``rejected`` and is not tried again;
    only a failure that may pass later (Stripe or the database down) stays ``failed``.
    ``shop_ids``: str, int or UUID.
    """
    state = state_for(ops.ctx.db)
    wanted = None if delivery_ids is None else {int(d) for d in delivery_ids}
    shops = None if shop_ids is None else [canonical_id(s) for s in id_list(shop_ids) or []]
    rows = []
    for d in state.delivery_rows(outcomes=REPLAYABLE, shop_ids=shops):
        if wanted is not None and int(d["delivery_id"]) not in wanted:
            continue
        delivery_id = int(d["delivery_id"])
        shop = _shop(ops, str(d["shop_id"]))
        outcome, detail = "failed", None
        event: dict[str, Any] = {}
        try:
            if shop is None:
                raise event_checks.EventInvalid(f"shop {d['shop_id']} no longer exists")
            received = d["received_at"]
            checked = check_delivery(
                shop,
                bytes(d["body"]),
                received_at=_aware(received).timestamp() if received else time.time(),
            )
            event = checked.event
            result, detail = process_event(
                ops.ctx,
                shop,
                event,
                source="replay",
                delivery_id=delivery_id,
                refetch=checked.note,
            )
            outcome = "duplicate" if result == "duplicate" else "processed"
        except event_checks.EventInvalid as exc:
            # It can never be applied: rejected once, not failed (and replayed) forever.
            outcome, detail = "rejected", str(exc)
            state.finish_delivery(delivery_id, outcome="rejected", status_code=400, reason=detail)
        except Exception as exc:  # noqa: BLE001 - stays failed, reported, the others go on
            detail = redact(describe_error(exc))
            state.finish_delivery(delivery_id, outcome="failed", reason=detail)
        rows.append(
            {
                "delivery_id": delivery_id,
                "shop_id": d["shop_id"],
                "event_id": event.get("id") or d["event_id"],
                "event_type": event.get("type") or d["event_type"],
                "outcome": outcome,
                "detail": detail,
            }
        )
    cols = {
        "delivery_id": "Int64",
        "shop_id": "string",
        "event_id": "string",
        "event_type": "string",
        "outcome": "string",
        "detail": "string",
    }
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    return pd.DataFrame(rows).astype(cols)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def deliveries(ops: Ops, shop_ids: Iterable[Any] | None = None) -> pd.DataFrame:
    """``WEBHOOK_DELIVERIES``: every delivery the receiver stored, newest first (no bodies)."""
    shops = None if shop_ids is None else [canonical_id(s) for s in id_list(shop_ids) or []]
    return state_for(ops.ctx.db).deliveries_frame(shops)
