"""Processing stored deliveries again: those that failed or were never finished.

A delivery is replayable when its signature was good when it arrived (outcome
``accepted``: the process stopped before finishing it; ``failed``: processing
raised). Its stored body is processed exactly as on arrival; the event id makes
it idempotent, so a replay of an already-applied event is a ``duplicate``.
Rejected deliveries (forged, unsigned, expired, unknown shop) are never replayed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from opskit.backend.state import state_for
from opskit.common.keys import redact
from opskit.common.stripe_errors import describe_error
from opskit.webhooks.receiver import _shop
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
    ``outcome`` (processed / duplicate / failed), ``detail`` (strings).
    """
    state = state_for(ops.ctx.db)
    wanted = None if delivery_ids is None else {int(d) for d in delivery_ids}
    shops = None if shop_ids is None else [str(s) for s in shop_ids]
    rows = []
    for d in state.delivery_rows(outcomes=REPLAYABLE, shop_ids=shops):
        if wanted is not None and int(d["delivery_id"]) not in wanted:
            continue
        shop = _shop(ops, str(d["shop_id"]))
        outcome, detail = "failed", None
        event: dict[str, Any] = {}
        try:
            if shop is None:
                raise LookupError(f"shop {d['shop_id']} no longer exists")
            event = json.loads(bytes(d["body"]))
            result, detail = process_event(
                ops.ctx, shop, event, source="replay", delivery_id=int(d["delivery_id"])
            )
            outcome = "duplicate" if result == "duplicate" else "processed"
        except Exception as exc:  # noqa: BLE001 - stays failed, reported, the others go on
            detail = redact(describe_error(exc))
            state.finish_delivery(int(d["delivery_id"]), outcome="failed", reason=detail)
        rows.append(
            {
                "delivery_id": int(d["delivery_id"]),
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


def deliveries(ops: Ops, shop_ids: Iterable[Any] | None = None) -> pd.DataFrame:
    """``WEBHOOK_DELIVERIES``: every delivery the receiver stored, newest first (no bodies)."""
    shops = None if shop_ids is None else [str(s) for s in shop_ids]
    return state_for(ops.ctx.db).deliveries_frame(shops)
