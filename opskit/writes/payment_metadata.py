"""Writing the order id into a payment intent's metadata, so the next run matches exactly.

The backend creates payment intents with no order link, so matching them to
orders is scored (see :mod:`opskit.core.payments`). Once an analyst accepts a
scored match, ``metadata["order_id"]`` on the payment intent makes it exact.

:func:`build_plan` is the dry run (nothing written): one ``METADATA_PLAN`` row per
scored match of a payment report (``ambiguous`` rows are never proposed: a
person must pick). :func:`apply_plan` writes a plan (or a filtered part of it),
one payment intent at a time, each through the writes machinery: live keys need
confirmation (:mod:`opskit.writes.guard`), the idempotency key is derived from
the shop, the payment intent and the value (:mod:`opskit.writes.idempotency`),
the payment intent is read first so a value already there is not written again
(``already``) and a different one is never overwritten (``conflict``), and every
attempt is audited. One row's failure is that row's ``error``; the rest go on.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import stripe

from opskit.common.context import Context
from opskit.common.exceptions import LiveWriteRefused, OpskitError
from opskit.core.frames import METADATA_PLAN, METADATA_RESULT, conform, empty
from opskit.core.ledger import ORDER_ID_KEY
from opskit.writes.actions import _retrieve, _send, _Write, _write_options
from opskit.writes.idempotency import derive_key

__all__ = ["ACTION", "apply_plan", "build_plan"]

ACTION = "payment_intent.set_order_id"


def build_plan(report: pd.DataFrame) -> pd.DataFrame:
    """``METADATA_PLAN`` rows for the scored, unambiguous matches of a payment report."""
    if not len(report):
        return empty(METADATA_PLAN)
    status = report["status"].astype("string")
    scored = (report["match_method"].astype("string") == "scored").fillna(False)
    keep = scored & (status != "ambiguous").fillna(False)
    keep &= report["order_id"].notna() & report["stripe_payment_intent_id"].notna()
    rows = report[keep]
    if not len(rows):
        return empty(METADATA_PLAN)
    plan = pd.DataFrame(
        {
            "shop_id": rows["shop_id"].astype("string"),
            "stripe_payment_intent_id": rows["stripe_payment_intent_id"].astype("string"),
            "key": ORDER_ID_KEY,
            "old_value": pd.NA,
            "new_value": rows["order_id"].astype("string"),
            "score": rows["score"],
            "reason": "scored match ("
            + status[keep]
            + ", score "
            + rows["score"].round(3).astype("string")
            + ")",
        }
    )
    return conform(plan.sort_values(["shop_id", "stripe_payment_intent_id"]), METADATA_PLAN)


def apply_plan(
    ctx: Context, plan: pd.DataFrame, *, actor: str, confirm: bool = False
) -> pd.DataFrame:
    """Write each plan row's ``new_value`` into its payment intent's metadata.

    Returns ``METADATA_RESULT``: the plan plus ``outcome`` (``written``,
    ``already``, ``conflict``, ``refused`` for a live key without confirmation,
    ``error``) and ``detail``. Calling it twice writes nothing the second time.
    """
    plan = conform(plan, METADATA_PLAN)
    out: list[dict[str, Any]] = []
    for row in plan.to_dict("records"):
        outcome, detail = _apply_row(ctx, row, actor=actor, confirm=confirm)
        out.append({**row, "outcome": outcome, "detail": detail})
    if not out:
        return empty(METADATA_RESULT)
    return conform(pd.DataFrame(out), METADATA_RESULT)


def _apply_row(
    ctx: Context, row: dict[str, Any], *, actor: str, confirm: bool
) -> tuple[str, str | None]:
    pi_id = str(row["stripe_payment_intent_id"])
    key_name = str(row["key"] or ORDER_ID_KEY)
    value = str(row["new_value"])
    try:
        shop = ctx.db.shop(row["shop_id"])
    except OpskitError as exc:
        return "error", exc.message
    params = {"key": key_name, "value": value}
    target = f"payment_intent:{pi_id}"
    write = _Write(
        ctx, actor=actor, shop=shop, action=ACTION, target=target, params=params,
        idempotency_key=derive_key(ACTION, shop.id, target, params),
    )  # fmt: skip
    try:
        write.guard(confirm)
        client = write.client()
        current = _retrieve(write, lambda: client.v1.payment_intents.retrieve(pi_id))
        if current is None:
            write.record("error", error=f"no payment intent {pi_id} in shop {shop.id}")
            return "error", f"no payment intent {pi_id} in this shop's Stripe account"
        existing = (current.get("metadata") or {}).get(key_name)
        if existing == value:
            write.record("ok", result=pi_id, params={**params, "already_done": True})
            return "already", f"metadata {key_name} is already {value}"
        if existing:
            message = f"metadata {key_name} is {existing}, not overwritten with {value}"
            write.record("refused", error=message)
            return "conflict", message
        body = {"metadata": {key_name: value}}
        _send(
            write,
            lambda k: client.v1.payment_intents.update(
                pi_id,
                params=body,  # type: ignore[arg-type]
                options=_write_options(k),
            ),
            lambda _: True,
        )
        return "written", None
    except LiveWriteRefused as exc:
        return "refused", exc.message
    except (stripe.StripeError, OpskitError) as exc:
        return "error", str(getattr(exc, "message", None) or exc).splitlines()[0]
