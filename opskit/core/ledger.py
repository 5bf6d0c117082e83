"""The money models: Stripe objects of many shops turned into one frame per grain.

Frames in the vocabulary of Stripe and of fivetran/dbt_stripe (``amount``,
``fee``, ``net``, ``reporting_category``, ``available_on``, ``payout``), with a
``shop_id`` column naming the source Stripe account, so many shops stack into
one frame. No I/O: the inputs are plain dicts as Stripe returns them, gathered
per shop in a :class:`ShopMoney` by :mod:`opskit.stripeapi.money`.

Grains:

- :func:`payments_frame` -> ``PAYMENTS``: one payment intent, with its latest
  charge, the charge's balance transaction (fee, net), refunds and dispute.
- :func:`balance_transactions_frame` -> ``BALANCE_TRANSACTIONS``: one ledger row;
  ``payout`` is the automatic payout that paid it out (from Stripe's itemization).
- :func:`payouts_frame` -> ``PAYOUTS``: one payout, with its itemized sums and the
  check that the itemized net equals the payout's amount.
- :func:`payout_report` -> ``PAYOUT_REPORT``: one (payout, reporting category),
  plus a ``manual_payout`` line per manual payout and an ``unpaid_balance`` line
  per shop and currency at the end of the period.
- :func:`daily_overview` -> ``DAILY_OVERVIEW``: one shop x UTC day x currency (or,
  ``by="currency"``, one day x currency across shops). Amounts are never summed
  across currencies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from opskit.core.frames import (
    BALANCE_TRANSACTIONS,
    DAILY_OVERVIEW,
    PAYMENTS,
    PAYOUT_REPORT,
    PAYOUTS,
    UTC_TIME,
    conform,
    empty,
)

__all__ = [
    "ORDER_ID_KEY",
    "ShopMoney",
    "balance_transactions_frame",
    "daily_overview",
    "end_balances",
    "payments_frame",
    "payout_report",
    "payouts_frame",
]

ORDER_ID_KEY = "order_id"  # the payment intent metadata key holding the local order id
Obj = dict[str, Any]


@dataclass
class ShopMoney:
    """Everything one shop's Stripe account said about money, as plain dicts."""

    shop_id: str
    intents: list[Obj] = field(default_factory=list)
    charges: list[Obj] = field(default_factory=list)
    refunds: list[Obj] = field(default_factory=list)
    disputes: list[Obj] = field(default_factory=list)
    transactions: list[Obj] = field(default_factory=list)  # balance transactions listed
    payouts: list[Obj] = field(default_factory=list)
    payout_items: dict[str, list[Obj]] = field(default_factory=dict)  # automatic payouts only
    payout_errors: dict[str, str] = field(default_factory=dict)  # payout id -> why not itemized
    balance: Obj | None = None  # GET /v1/balance
    requests: int = 0


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None


def _epoch(values: Iterable[Any]) -> pd.Series:
    seconds = pd.array([None if v is None or v != v else int(v) for v in values], dtype="Int64")
    return pd.Series(pd.to_datetime(seconds, unit="s", utc=True)).astype(UTC_TIME)


def _links(accounts: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    """(shop_id, customer id) -> account_id, from the accounts' details links."""
    if accounts is None or not len(accounts):
        return {}
    linked = accounts.dropna(subset=["stripe_customer_id"])
    keys = zip(
        linked["shop_id"].astype("string"),
        linked["stripe_customer_id"].astype("string"),
        linked["account_id"].astype("string"),
        strict=True,
    )
    out: dict[tuple[str, str], str] = {}
    for shop, cus, acc in keys:
        out.setdefault((shop, cus), acc)  # duplicate links: the first account
    return out


def payments_frame(
    shops: Iterable[ShopMoney], accounts: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One ``PAYMENTS`` row per payment intent of each shop.

    Sources: the payment intent (id, status, amount, amount_received, currency,
    customer, ``metadata["order_id"]``, created, last_payment_error), its latest
    charge (amount_refunded, failure_code/message, balance_transaction), that
    balance transaction (fee, net, available_on), the charge's newest dispute
    (id, status, amount); ``account_id`` is the local account whose details
    link the customer (``accounts``: an ACCOUNTS frame).
    """
    links = _links(accounts)
    rows: list[Obj] = []
    for sm in shops:
        charges = {c["id"]: c for c in sm.charges if c.get("id")}
        txns = {t["id"]: t for t in sm.transactions if t.get("id")}
        disputes: dict[str, Obj] = {}
        for d in sorted(sm.disputes, key=lambda d: (d.get("created") or 0, d.get("id") or "")):
            ch = _id(d.get("charge"))
            if ch:
                disputes[ch] = d
        for pi in sm.intents:
            latest = pi.get("latest_charge")
            charge = latest if isinstance(latest, Mapping) else charges.get(_id(latest) or "")
            charge = dict(charge or {})
            if isinstance(latest, Mapping) and latest.get("id") in charges:
                charge = {**charge, **charges[latest["id"]]}  # the listed copy is current
            bt = charge.get("balance_transaction")
            txn = bt if isinstance(bt, Mapping) else txns.get(_id(bt) or "")
            txn = txn or {}
            dispute = disputes.get(charge.get("id") or "", {})
            error = pi.get("last_payment_error") or {}
            customer = _id(pi.get("customer"))
            status = pi.get("status")
            received = pi.get("amount_received")
            if received is None:
                ok = charge.get("status") == "succeeded" and charge.get("captured", True)
                received = charge.get("amount", 0) if ok else 0
            meta = pi.get("metadata") or {}
            rows.append(
                {
                    "shop_id": sm.shop_id,
                    "stripe_payment_intent_id": pi.get("id"),
                    "stripe_charge_id": charge.get("id"),
                    "stripe_customer_id": customer,
                    "account_id": links.get((sm.shop_id, customer or "")),
                    "metadata_order_id": meta.get(ORDER_ID_KEY) or None,
                    "stripe_invoice_id": _id(pi.get("invoice")),
                    "status": status,
                    "amount": pi.get("amount"),
                    "amount_received": received,
                    "amount_refunded": charge.get("amount_refunded", 0) if charge else 0,
                    "currency": (pi.get("currency") or "").lower() or None,
                    "fee": txn.get("fee"),
                    "net": txn.get("net"),
                    "stripe_balance_transaction_id": _id(bt),
                    "available_on": txn.get("available_on"),
                    "failure_code": error.get("code") or charge.get("failure_code"),
                    "failure_message": error.get("message") or charge.get("failure_message"),
                    "stripe_dispute_id": dispute.get("id"),
                    "dispute_status": dispute.get("status"),
                    "dispute_amount": dispute.get("amount"),
                    "created_at": pi.get("created"),
                }
            )
    if not rows:
        return empty(PAYMENTS)
    df = pd.DataFrame.from_records(rows)
    for col in ("available_on", "created_at"):
        df[col] = _epoch(df[col].tolist())
    df = df.sort_values(["shop_id", "created_at", "stripe_payment_intent_id"], kind="mergesort")
    return conform(df, PAYMENTS)


def _payment_of(sm: ShopMoney) -> dict[str, str]:
    """Source id (charge, refund, dispute) -> payment intent id, from what the shop listed."""
    out: dict[str, str] = {}
    for c in sm.charges:
        if c.get("id") and _id(c.get("payment_intent")):
            out[c["id"]] = _id(c.get("payment_intent")) or ""
    for pi in sm.intents:
        ch = _id(pi.get("latest_charge"))
        if ch and pi.get("id"):
            out.setdefault(ch, pi["id"])
    for r in sm.refunds:
        pi_id = _id(r.get("payment_intent")) or out.get(_id(r.get("charge")) or "")
        if r.get("id") and pi_id:
            out[r["id"]] = pi_id
    for d in sm.disputes:
        pi_id = _id(d.get("payment_intent")) or out.get(_id(d.get("charge")) or "")
        if d.get("id") and pi_id:
            out[d["id"]] = pi_id
    return out


def _payment_intent(source: Any) -> str | None:
    """The payment intent an expanded source (charge, refund, dispute) belongs to."""
    if isinstance(source, Mapping):
        return _id(source.get("payment_intent"))
    return None


def balance_transactions_frame(shops: Iterable[ShopMoney]) -> pd.DataFrame:
    """One ``BALANCE_TRANSACTIONS`` row per ledger row listed, plus payout items not listed.

    ``payout`` comes from Stripe's itemization of automatic payouts (``GET
    /v1/balance_transactions?payout=po_...``); it stays <NA> for rows not yet paid
    out, rows paid out by a manual payout (Stripe cannot tell) and payout rows.
    """
    rows: list[Obj] = []
    for sm in shops:
        paid_by: dict[str, str] = {}
        for po, items in sm.payout_items.items():
            for t in items:
                if t.get("id") and t.get("type") not in ("payout",):
                    paid_by[t["id"]] = po
        pis = _payment_of(sm)
        seen: dict[str, Obj] = {}
        for t in sm.transactions:
            seen.setdefault(t["id"], t)
        for items in sm.payout_items.values():
            for t in items:
                seen.setdefault(t["id"], t)
        for t in seen.values():
            source = _id(t.get("source"))
            rows.append(
                {
                    "shop_id": sm.shop_id,
                    "stripe_balance_transaction_id": t["id"],
                    "type": t.get("type"),
                    "reporting_category": t.get("reporting_category"),
                    "amount": t.get("amount"),
                    "fee": t.get("fee", 0),
                    "net": t.get("net"),
                    "currency": (t.get("currency") or "").lower() or None,
                    "source": source,
                    "stripe_payment_intent_id": _payment_intent(t.get("source"))
                    or pis.get(source or ""),
                    "status": t.get("status"),
                    "payout": paid_by.get(t["id"]),
                    "description": t.get("description"),
                    "created_at": t.get("created"),
                    "available_on": t.get("available_on"),
                }
            )
    if not rows:
        return empty(BALANCE_TRANSACTIONS)
    df = pd.DataFrame.from_records(rows)
    for col in ("created_at", "available_on"):
        df[col] = _epoch(df[col].tolist())
    df = df.sort_values(["shop_id", "created_at", "stripe_balance_transaction_id"])
    return conform(df, BALANCE_TRANSACTIONS)


def payouts_frame(shops: Iterable[ShopMoney]) -> pd.DataFrame:
    """One ``PAYOUTS`` row per payout, checked against its itemization.

    ``check``: ``itemized_ok`` (the items' net, the payout's own row left out,
    equals ``amount``), ``sum_mismatch`` (it does not; ``difference`` says by how
    much), ``manual_not_itemizable`` (a manual payout: Stripe does not record
    which transactions it paid out), ``not_itemized`` (automatic, but the
    itemization was not read or failed; see ``frame.attrs["payout_errors"]``).
    """
    rows: list[Obj] = []
    errors: dict[str, str] = {}
    for sm in shops:
        errors.update(sm.payout_errors)
        for po in sm.payouts:
            automatic = bool(po.get("automatic"))
            items = sm.payout_items.get(po["id"]) if automatic else None
            row: Obj = {
                "shop_id": sm.shop_id,
                "payout_id": po["id"],
                "amount": po.get("amount"),
                "currency": (po.get("currency") or "").lower() or None,
                "status": po.get("status"),
                "automatic": automatic,
                "method": po.get("method"),
                "arrival_at": po.get("arrival_date"),
                "created_at": po.get("created"),
                "stripe_balance_transaction_id": _id(po.get("balance_transaction")),
                "itemized": items is not None,
            }
            if items is not None:
                own = [t for t in items if t.get("type") != "payout"]
                row.update(
                    item_count=len(own),
                    itemized_gross=sum(int(t.get("amount") or 0) for t in own),
                    itemized_fee=sum(int(t.get("fee") or 0) for t in own),
                    itemized_net=sum(int(t.get("net") or 0) for t in own),
                )
                row["difference"] = int(po.get("amount") or 0) - row["itemized_net"]
                row["check"] = "itemized_ok" if row["difference"] == 0 else "sum_mismatch"
            else:
                row["check"] = "not_itemized" if automatic else "manual_not_itemizable"
            rows.append(row)
    if not rows:
        frame = empty(PAYOUTS)
    else:
        df = pd.DataFrame.from_records(rows)
        for col in ("arrival_at", "created_at"):
            df[col] = _epoch(df[col].tolist())
        df = df.sort_values(["shop_id", "created_at", "payout_id"], kind="mergesort")
        frame = conform(df, PAYOUTS)
    frame.attrs["payout_errors"] = errors
    return frame


def end_balances(shops: Iterable[ShopMoney], txns: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """Per shop and currency: the Stripe balance at ``at`` (available, pending, total).

    From today's balance (``GET /v1/balance``) minus the net of every listed
    ledger row created after ``at`` (so the rows from ``at`` to now must be listed).
    A row is available at ``at`` once its ``available_on`` has passed.
    """
    rows = []
    for sm in shops:
        now: dict[str, int] = {}
        for part in ("available", "pending"):
            for b in (sm.balance or {}).get(part) or []:
                cur = str(b.get("currency") or "").lower()
                now[cur] = now.get(cur, 0) + int(b.get("amount") or 0)
        mine = txns[txns["shop_id"] == sm.shop_id]
        for cur in sorted(set(now) | set(mine["currency"].dropna())):
            rows_cur = mine[mine["currency"] == cur]
            later = rows_cur[rows_cur["created_at"] > at]
            total = now.get(cur, 0) - int(later["net"].sum())
            before = rows_cur[rows_cur["created_at"] <= at]
            pending = int(before.loc[before["available_on"] > at, "net"].sum())
            rows.append(
                {
                    "shop_id": sm.shop_id,
                    "currency": cur,
                    "balance": total,
                    "pending": pending,
                    "available": total - pending,
                }
            )
    out = pd.DataFrame(rows, columns=["shop_id", "currency", "balance", "pending", "available"])
    return out.astype(
        {
            "shop_id": "string",
            "currency": "string",
            "balance": "Int64",
            "pending": "Int64",
            "available": "Int64",
        }
    )


def payout_report(
    payouts: pd.DataFrame,
    txns: pd.DataFrame,
    balances: pd.DataFrame | None = None,
    *,
    period_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """``PAYOUT_REPORT``: gross, fee and net per reporting category of each payout.

    ``payouts``: PAYOUTS rows in scope; ``txns``: BALANCE_TRANSACTIONS with the
    ``payout`` column filled from the itemization; ``balances``: the output of
    :func:`end_balances` at ``period_end`` (one ``unpaid_balance`` line per shop
    and currency: what was still in Stripe, not yet paid out).
    """
    lines: list[pd.DataFrame] = []
    items = txns[txns["payout"].isin(payouts["payout_id"])]
    if len(items):
        g = (
            items.groupby(["shop_id", "payout", "reporting_category", "currency"], dropna=False)
            .agg(
                count=("stripe_balance_transaction_id", "size"),
                gross=("amount", "sum"),
                fee=("fee", "sum"),
                net=("net", "sum"),
            )
            .reset_index()
            .rename(columns={"payout": "payout_id"})
        )
        meta = payouts.set_index("payout_id")[["automatic", "status", "arrival_at"]]
        g = g.join(meta, on="payout_id")
        g["line"] = "category"
        lines.append(g)
    manual = payouts[~payouts["itemized"].fillna(False).astype(bool)]
    if len(manual):
        m = manual[["shop_id", "payout_id", "currency", "automatic", "status", "arrival_at"]].copy()
        m["line"] = "manual_payout"
        m["net"] = manual["amount"].to_numpy()
        m["detail"] = np.where(
            manual["automatic"].fillna(False).to_numpy(bool),
            "automatic payout whose itemization could not be read",
            "manual payout: Stripe does not record which transactions it paid out; "
            "reconcile it against the ledger by hand",
        )
        lines.append(m)
    if balances is not None and len(balances):
        b = balances.rename(columns={"balance": "net"}).copy()
        b["line"] = "unpaid_balance"
        when = f" at {period_end:%Y-%m-%d %H:%M} UTC" if period_end is not None else ""
        b["detail"] = (
            "still in Stripe"
            + when
            + ": available "
            + b["available"].astype("string")
            + ", pending "
            + b["pending"].astype("string")
        )
        lines.append(b.drop(columns=["available", "pending"]))
    if not lines:
        return empty(PAYOUT_REPORT)
    # Conformed before sorting: a period with no payouts has only unpaid_balance lines,
    # which carry no arrival_at, payout_id or reporting_category until conform adds them.
    out = conform(pd.concat(lines, ignore_index=True), PAYOUT_REPORT)
    order = {"category": 0, "manual_payout": 1, "unpaid_balance": 2}
    out["_o"] = out["line"].map(order)
    out = out.sort_values(
        ["shop_id", "_o", "arrival_at", "payout_id", "reporting_category"], na_position="last"
    )
    return out.drop(columns="_o").reset_index(drop=True)


_CATEGORY_COLUMNS = {
    "charge": "sales",
    "refund": "refunds",
    "refund_failure": "refunds",
    "dispute": "disputes",
    "dispute_reversal": "disputes",
    "payout": "payouts",
    "payout_reversal": "payouts",
}


def daily_overview(
    txns: pd.DataFrame,
    charges: pd.DataFrame,
    balances_now: pd.DataFrame,
    *,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    by: str = "shop",
) -> pd.DataFrame:
    """``DAILY_OVERVIEW``: one shop x UTC day x currency (``by="currency"``: across shops).

    ``txns``: BALANCE_TRANSACTIONS listed from ``since`` up to now (so the end
    balance of every day can be walked back from today's); ``charges``: a frame
    with shop_id, status, amount, currency, created_at of the charges (failed
    ones are counted); ``balances_now``: shop_id, currency, balance (today's).
    Days without any activity are left out; ``since``/``until`` bound the days shown.
    """
    if by not in ("shop", "currency"):
        raise ValueError(f"by must be 'shop' or 'currency', not {by!r}")
    t = txns.copy()
    t["day"] = t["created_at"].dt.floor("D")
    col = t["reporting_category"].map(_CATEGORY_COLUMNS).fillna("adjustments")
    parts = {}
    for name in ("sales", "refunds", "disputes", "adjustments"):
        parts[name] = t["amount"].where(col == name, 0)
    parts["payouts"] = (-t["amount"]).where(col == "payouts", 0)
    parts["sales_count"] = (col == "sales").astype("Int64")
    parts["refund_count"] = (col == "refunds").astype("Int64")
    parts["payout_count"] = (col == "payouts").astype("Int64")
    parts["net"] = t["net"].where(col != "payouts", 0)
    parts["fees"] = t["fee"].fillna(0)
    parts["all_net"] = t["net"]
    frame = pd.DataFrame(
        {"shop_id": t["shop_id"], "day": t["day"], "currency": t["currency"], **parts}
    )
    keys = ["shop_id", "day", "currency"]
    daily = frame.groupby(keys, dropna=False).sum().reset_index()
    failed = charges[charges["status"].astype("string") == "failed"].copy()
    if len(failed):
        failed["day"] = pd.to_datetime(failed["created_at"], utc=True).dt.floor("D")
        f = (
            failed.groupby(keys)
            .agg(failed_charge_count=("amount", "size"), failed_charge_amount=("amount", "sum"))
            .reset_index()
        )
        daily = daily.merge(f, on=keys, how="outer")
    else:
        daily["failed_charge_count"] = 0
        daily["failed_charge_amount"] = 0
    for c in daily.columns:
        if c not in keys:
            daily[c] = daily[c].fillna(0)
    # End balance: today's balance minus the net of every row after the day.
    daily = daily.sort_values(keys).reset_index(drop=True)
    now = {
        (str(s), str(c)): int(b)
        for s, c, b in zip(
            balances_now["shop_id"], balances_now["currency"], balances_now["balance"], strict=True
        )
    }
    end = []
    for (shop, cur), g in daily.groupby(["shop_id", "currency"], sort=False):
        later = g["all_net"][::-1].cumsum()[::-1] - g["all_net"]
        end.append(now.get((str(shop), str(cur)), 0) - later)
    if end:
        daily["end_balance"] = pd.concat(end).sort_index()
    if since is not None:
        daily = daily[daily["day"] >= since.floor("D")]
    if until is not None:
        daily = daily[daily["day"] <= until]
    if by == "currency":
        daily = (
            daily.drop(columns=["shop_id"])
            .groupby(["day", "currency"])
            .sum()
            .reset_index()
            .assign(shop_id=pd.NA)
        )
    daily = daily.sort_values(
        ["shop_id", "day", "currency"] if by == "shop" else ["day", "currency"]
    )
    return conform(daily.drop(columns=["all_net"], errors="ignore"), DAILY_OVERVIEW)
