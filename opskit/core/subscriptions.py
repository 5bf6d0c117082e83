"""Subscriptions reconciled through the customer, for backends that record none locally.

shop-backend stores no subscription id or status anywhere: a subscription
belongs to an account only through its customer (``details["stripe_customer_id"]``),
and to a local product only through its prices' lookup keys
(``monthly-<product id>`` / ``yearly-<product id>``). This report therefore starts
from each shop's Stripe subscriptions (canceled ones are no finding) and, per
subscription, the first rule that applies wins:

==================  ===================================================================
status              when
==================  ===================================================================
shop_not_configured the shop has no usable key (one row per account, as every report)
shop_error          Stripe failed for the shop
abandoned_checkout  ``incomplete_expired``, or ``incomplete`` for longer than a day
                    (``abandon_after``): a checkout whose first invoice was never paid
orphan_in_stripe    live, and no account of the shop links its customer
multiple_active     the customer has two or more subscriptions that will bill again
                    (active, trialing, past_due, not set to end at period end): each
                    of them is a row
payment_trouble     ``past_due`` or ``unpaid``: the customer's payments fail
unknown_product     an item's price has no lookup key naming a product of this shop,
                    or names one whose recurring price cannot be read (its
                    ``row_error``, e.g. NaN or Infinity, in the detail)
price_drift         an item's price differs from the product's
                    ``recurring_price_monthly``/``yearly`` in cents (or is not EUR)
match               a linked customer's subscription with nothing wrong; a fresh
                    ``incomplete`` checkout, ``paused`` and ``trialing`` included
                    (``stripe_status`` says which)
==================  ===================================================================

``account_id`` is the account linking the customer (the lowest id when several
do); ``stripe_price_id`` lists every item's price (sorted, joined by ",");
``local_status``/``local_price_id`` stay <NA> (nothing is recorded locally).
Pure: frames in, a ``SUBSCRIPTION_REPORT`` frame out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from opskit.common.ids import id_sort_key
from opskit.core.frames import SUBSCRIPTION_REPORT
from opskit.core.reconcile import (
    _assemble,
    _bool,
    _clean_id,
    _piece,
    _shop_rows,
    _shop_states,
    _take,
)
from opskit.core.subscription_status import counts_for_multiple_active, status_key

__all__ = ["DEFAULT_LOOKUP_KEY_FORMATS", "parse_lookup_keys", "reconcile_customer_subscriptions"]

#: interval -> lookup key format, as shop-backend names its prices.
DEFAULT_LOOKUP_KEY_FORMATS: tuple[tuple[str, str], ...] = (
    ("month", "monthly-{product_id}"),
    ("year", "yearly-{product_id}"),
)
_PAYMENT_TROUBLE = ("past_due", "unpaid")
#: An ``incomplete`` checkout older than this is abandoned (Stripe expires it after ~23 h).
ABANDON_AFTER = pd.Timedelta(days=1)


def parse_lookup_keys(
    keys: pd.Series, formats: Sequence[tuple[str, str]] = DEFAULT_LOOKUP_KEY_FORMATS
) -> pd.DataFrame:
    """``interval`` and ``product_id`` (lower case) named by each lookup key; <NA> when none."""
    text = keys.astype("string").str.strip()
    interval = pd.Series(pd.NA, index=keys.index, dtype="string")
    product = pd.Series(pd.NA, index=keys.index, dtype="string")
    for name, fmt in formats:
        prefix, _, suffix = fmt.partition("{product_id}")
        hit = text.str.startswith(prefix).fillna(False) & text.str.endswith(suffix).fillna(False)
        hit &= text.str.len().fillna(0) > len(prefix) + len(suffix)
        hit &= interval.isna()
        middle = text.str.slice(len(prefix), None if not suffix else -len(suffix))
        interval = interval.mask(hit, name)
        product = product.mask(hit, middle.str.lower())
    return pd.DataFrame({"interval": interval, "product_id": product})


def _items_of(subs: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame:
    """One row per item: from ``items`` when given, else each subscription's first item."""
    cols = {
        "shop_id": "string",
        "stripe_subscription_id": "string",
        "stripe_price_id": "string",
        "lookup_key": "string",
        "unit_amount": "Int64",
        "currency": "string",
        "interval": "string",
    }
    if items is not None:
        return _take(items, cols)
    first = subs.assign(lookup_key=subs["lookup_keys"].astype("string").str.split(",").str[0])
    return _take(first, cols)


def reconcile_customer_subscriptions(
    shops: pd.DataFrame,
    accounts: pd.DataFrame,
    subscriptions: pd.DataFrame,
    items: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    shop_errors: Mapping[str, str] | None = None,
    *,
    now: pd.Timestamp | None = None,
    abandon_after: pd.Timedelta = ABANDON_AFTER,
    lookup_key_formats: Sequence[tuple[str, str]] = DEFAULT_LOOKUP_KEY_FORMATS,
) -> pd.DataFrame:
    """The subscription report of a backend that records subscriptions through the customer.

    ``subscriptions``: SUBSCRIPTIONS; ``items``: SUBSCRIPTION_ITEMS (else each
    subscription's first item is checked); ``products``: PRODUCTS (else no
    ``unknown_product``/``price_drift`` check); ``now``: the time ``incomplete``
    ages are measured at (default: now, UTC). See the module docstring.
    """
    spec = SUBSCRIPTION_REPORT
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    states = _shop_states(shops, shop_errors)
    acc = _take(
        accounts, {"account_id": "string", "shop_id": "string", "stripe_customer_id": "string"}
    )
    acc = acc[_bool(acc["shop_id"].isin(states["shop_id"]))].reset_index(drop=True)
    acc["stripe_customer_id"] = _clean_id(acc["stripe_customer_id"])
    pieces = _shop_rows(
        spec, states, acc, {"account_id": "account_id", "stripe_customer_id": "stripe_customer_id"}
    )
    ok = states[states["problem_status"].isna()][["shop_id", "shop_name"]]

    subs = _take(
        subscriptions,
        {
            "shop_id": "string",
            "stripe_subscription_id": "string",
            "stripe_customer_id": "string",
            "status": "string",
            "stripe_price_id": "string",
            "stripe_price_ids": "string",
            "lookup_keys": "string",
            "unit_amount": "Int64",
            "currency": "string",
            "interval": "string",
            "cancel_at_period_end": "boolean",
        },
    )
    subs["created_at"] = _times(subscriptions, "created_at")
    subs["current_period_end_at"] = _times(subscriptions, "current_period_end_at")
    subs = subs[_bool(subs["shop_id"].isin(ok["shop_id"]))]
    subs["stripe_subscription_id"] = _clean_id(subs["stripe_subscription_id"])
    subs["stripe_customer_id"] = _clean_id(subs["stripe_customer_id"])
    subs = subs[subs["stripe_subscription_id"].notna()].drop_duplicates(
        ["shop_id", "stripe_subscription_id"]
    )
    st = status_key(subs["status"])
    subs = subs[_bool(st != "canceled")].reset_index(drop=True)  # ended on purpose: no finding
    st = status_key(subs["status"])
    if items is not None and len(items):  # every item's price, where the frame lacks them
        joined = (
            items.dropna(subset=["stripe_price_id"])
            .groupby("stripe_subscription_id")["stripe_price_id"]
            .agg(lambda s: ",".join(sorted(set(s.astype(str)))))
        )
        known = subs["stripe_subscription_id"].map(joined).astype("string")
        subs["stripe_price_ids"] = subs["stripe_price_ids"].fillna(known)

    # the account linking each customer: the lowest account id of the shop
    linkers = acc[acc["stripe_customer_id"].notna()].copy()
    linkers["_order"] = id_sort_key(linkers["account_id"])
    linkers = (
        linkers.sort_values("_order", kind="stable")
        .drop_duplicates(["shop_id", "stripe_customer_id"])
        .drop(columns="_order")
    )
    subs = subs.merge(linkers, on=["shop_id", "stripe_customer_id"], how="left")
    linked = _bool(subs["account_id"].notna())

    age = now - subs["created_at"]
    abandoned = _bool(st == "incomplete_expired") | (
        _bool(st == "incomplete") & _bool((age > abandon_after).fillna(False))
    )
    live = ~_bool(st.isin(["incomplete_expired", "canceled", ""]))
    orphan = ~abandoned & live & ~linked

    billing = counts_for_multiple_active(
        subs["status"], subs["cancel_at_period_end"], None, subs["current_period_end_at"]
    ).to_numpy(dtype=bool)
    customer = subs["shop_id"].fillna("") + "\x00" + subs["stripe_customer_id"].fillna("")
    candidates = billing & linked & ~abandoned
    multi = np.zeros(len(subs), dtype=bool)
    multi[candidates] = customer[candidates].duplicated(keep=False).to_numpy()
    rest = ~abandoned & ~orphan & ~multi
    trouble = rest & _bool(st.isin(_PAYMENT_TROUBLE))
    rest &= ~trouble

    unknown_text, drift_text = _item_findings(subs, items, products, lookup_key_formats)
    unknown = rest & _bool(unknown_text.notna())
    rest &= ~unknown
    drift = rest & _bool(drift_text.notna())
    match = rest & ~drift

    def cols(mask: np.ndarray) -> dict[str, object]:
        rows = subs[mask]
        return {
            "shop_id": rows["shop_id"],
            "account_id": rows["account_id"],
            "stripe_customer_id": rows["stripe_customer_id"],
            "stripe_subscription_id": rows["stripe_subscription_id"],
            "stripe_status": rows["status"],
            "stripe_price_id": rows["stripe_price_ids"].fillna(rows["stripe_price_id"]),
        }

    def add(status: str, mask: np.ndarray, detail: Any, action: Any) -> None:
        c = cols(mask)
        c["detail"] = (
            detail[mask].reset_index(drop=True) if isinstance(detail, pd.Series) else detail
        )
        c["suggested_action"] = action
        pieces.append(_piece(spec, status, c, int(mask.sum())))

    status_text = subs["status"].fillna("?")
    created = subs["created_at"].dt.strftime("%Y-%m-%d %H:%M UTC").fillna("?")
    add(
        "abandoned_checkout",
        abandoned,
        pd.Series(
            np.where(
                _bool(st == "incomplete"),
                "checkout never paid: incomplete since " + created,
                "checkout never paid: incomplete_expired (started " + created + ")",
            ),
            index=subs.index,
            dtype="string",
        ),
        "nothing is billed; cancel it if still incomplete, or ask the customer to retry",
    )
    add(
        "orphan_in_stripe",
        orphan,
        "live subscription (" + status_text + ") of a customer no account of this shop links",
        "find the customer's account (customer report: orphan_in_stripe) and link it",
    )
    counts = customer[multi].value_counts()
    lists = (
        subs[multi]
        .groupby(customer[multi], sort=False)["stripe_subscription_id"]
        .agg(lambda s: ", ".join(sorted(s.astype(str))))
    )
    add(
        "multiple_active",
        multi,
        pd.Series(
            [
                f"customer has {counts.get(k, 0)} subscriptions that will bill: {lists.get(k, '')}"
                for k in customer
            ],
            index=subs.index,
            dtype="string",
        ),
        "review for double billing; cancel the extra subscriptions",
    )
    add(
        "payment_trouble",
        trouble,
        pd.Series(
            np.where(
                _bool(st == "past_due"),
                "past_due: the latest invoice failed; Stripe keeps retrying",
                "unpaid: retries exhausted; invoices are no longer paid",
            ),
            index=subs.index,
            dtype="string",
        ),
        "contact the customer about their payment method",
    )
    add(
        "unknown_product",
        unknown,
        unknown_text,
        "give the price a lookup key monthly-<product id> / yearly-<product id> of a product "
        "of this shop, or check the product",
    )
    add(
        "price_drift",
        drift,
        drift_text,
        "align the Stripe price with the product's recurring price (or the product with it)",
    )
    add(
        "match",
        match,
        "linked customer's subscription (" + status_text + ")",
        pd.NA,
    )
    return _assemble(spec, pieces, ["shop_id", "account_id", "stripe_subscription_id"], states)


def _times(frame: pd.DataFrame, col: str) -> pd.Series:
    if col not in frame.columns:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(frame[col], utc=True).astype("datetime64[ns, UTC]")


def _item_findings(
    subs: pd.DataFrame,
    items: pd.DataFrame | None,
    products: pd.DataFrame | None,
    formats: Sequence[tuple[str, str]],
) -> tuple[pd.Series, pd.Series]:
    """Per subscription: why an item names no product (else <NA>), and which item's
    price differs from its product's (else <NA>). Both <NA> without products."""
    none = pd.Series(pd.NA, index=subs.index, dtype="string")
    if products is None:
        return none, none.copy()
    its = _items_of(subs, items)
    its = its[
        _bool(its["stripe_subscription_id"].isin(subs["stripe_subscription_id"]))
    ].reset_index(drop=True)
    named = parse_lookup_keys(its["lookup_key"], formats)
    prods = _take(
        products,
        {
            "product_id": "string",
            "shop_id": "string",
            "monthly_amount": "Int64",
            "yearly_amount": "Int64",
            "currency": "string",
            "row_error": "string",
        },
    )
    prods["product_id"] = prods["product_id"].str.lower()
    its = pd.concat([its, named.rename(columns={"interval": "_named_interval"})], axis=1)
    its = its.merge(
        prods.rename(columns={"currency": "_product_currency"}),
        on=["shop_id", "product_id"],
        how="left",
        indicator=True,
    )
    known = _bool(its["_merge"] == "both")
    monthly = _bool(its["_named_interval"] == "month")
    expected = its["monthly_amount"].where(monthly, its["yearly_amount"])
    lk = its["lookup_key"].fillna("<none>")
    price = "price " + its["stripe_price_id"].fillna("?")
    names_product = (
        price + " (lookup key " + lk + ") names product " + its["product_id"].fillna("?")
    )
    unknown_msg = pd.Series(
        np.where(
            _bool(its["product_id"].isna()),
            price + " has lookup key " + lk + ", which names no product",
            names_product + ", not a product of this shop",
        ),
        dtype="string",
    ).where(~known, pd.NA)
    # A product whose recurring price could not be read (row_error, the amount <NA>):
    # its subscriptions name that product's reason, never a drift against nothing.
    unreadable = known & _bool(expected.isna()) & _bool(its["row_error"].notna())
    unknown_msg = unknown_msg.mask(
        unreadable,
        names_product + ", whose price cannot be read: " + its["row_error"].fillna("?"),
    )
    known = known & ~unreadable
    cur_ok = its["currency"].str.lower().fillna("") == its["_product_currency"].str.lower().fillna(
        ""
    )
    differs = known & (
        _bool(expected.isna())
        | _bool(expected.ne(its["unit_amount"]).fillna(True))
        | ~_bool(cur_ok)
    )
    drift_msg = pd.Series(
        "price "
        + its["stripe_price_id"].fillna("?")
        + " ("
        + lk
        + "): Stripe "
        + its["unit_amount"].astype("string").fillna("?")
        + " "
        + its["currency"].fillna("?")
        + ", product "
        + expected.astype("string").fillna("no " + its["_named_interval"].fillna("?") + "ly price")
        + " "
        + its["_product_currency"].fillna("?"),
        dtype="string",
    ).where(differs, pd.NA)

    def per_sub(msgs: pd.Series) -> pd.Series:
        got = msgs.groupby(its["stripe_subscription_id"]).agg(
            lambda s: "; ".join(s.dropna().astype(str)) or None
        )
        key = subs["stripe_subscription_id"]
        return pd.Series(key.map(got), index=subs.index, dtype="string")

    if not len(its):
        return none, none.copy()
    return per_sub(unknown_msg), per_sub(drift_msg)
