"""What makes a finding sizeable and actionable: amounts, periods and a Stripe dashboard link.

Pure functions over frames (no I/O): :func:`add_dashboard_links` fills the
``dashboard_url`` column of any frame with Stripe ids and a ``shop_id`` from the
shops' key mode; :func:`add_subscription_terms` copies each subscription's amount,
currency, interval and period end from the ``SUBSCRIPTIONS`` frame into a
subscription report, so ``price_mismatch`` and ``multiple_active`` rows can be
sized. Both only add to columns the frame specs declare (``opskit.core.frames``).

>>> dashboard_url("cus_Q1", "test")
'https://dashboard.stripe.com/test/customers/cus_Q1'
>>> dashboard_url("sub_Q1", "live")
'https://dashboard.stripe.com/subscriptions/sub_Q1'
>>> dashboard_url("cus_Q1", "none") is None
True
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

__all__ = [
    "DASHBOARD",
    "add_dashboard_links",
    "add_subscription_terms",
    "dashboard_url",
]

DASHBOARD = "https://dashboard.stripe.com/"

# Stripe id prefix -> the dashboard's path for that object.
_PATHS = {
    "cus_": "customers",
    "sub_": "subscriptions",
    "pi_": "payments",
    "ch_": "payments",
    "price_": "prices",
    "prod_": "products",
    "po_": "payouts",
    "re_": "refunds",
    "in_": "invoices",
    "dp_": "disputes",
    "evt_": "events",
}

# What a subscription report row borrows from the subscription itself.
SUBSCRIPTION_TERMS = ("unit_amount", "currency", "interval", "current_period_end_at")


def dashboard_url(object_id: object, mode: object) -> str | None:
    """The object's page in its Stripe account's dashboard, or None.

    ``mode`` is the shop's key mode (``live``/``test``; anything else: no link,
    since a shop without a usable key has no dashboard to point at). Ids with an
    unknown prefix, missing ids and made-up ids with characters Stripe never uses
    give None. The link opens the object in whichever Stripe account the browser
    is signed in to: each shop has its own.
    """
    if not isinstance(object_id, str) or mode not in ("live", "test"):
        return None
    if not object_id.replace("_", "").isalnum():
        return None
    for prefix, path in _PATHS.items():
        if object_id.startswith(prefix) and len(object_id) > len(prefix):
            base = DASHBOARD + ("test/" if mode == "test" else "")
            return f"{base}{path}/{object_id}"
    return None


def add_dashboard_links(
    frame: pd.DataFrame, shops: pd.DataFrame, id_columns: Iterable[str]
) -> pd.DataFrame:
    """``frame`` with ``dashboard_url`` (``string``) filled from the first id column set.

    ``shops`` is a ``SHOPS`` frame (``shop_id``, ``mode``); ``id_columns`` are
    tried in order per row (e.g. the subscription id, else the customer id); on
    ``missing_in_stripe`` rows the first is skipped (Stripe has no such object).
    Rows of shops not in ``shops`` or without a live/test key get <NA>.
    """
    out = frame.copy()
    if not len(out) or "shop_id" not in out.columns:
        out["dashboard_url"] = pd.Series(pd.NA, index=out.index, dtype="string")
        return out
    modes = dict(
        zip(shops["shop_id"].astype("string"), shops["mode"].astype("string"), strict=True)
    )
    mode = out["shop_id"].astype("string").map(modes)
    ids = pd.Series(pd.NA, index=out.index, dtype="string")
    # The first id names an object Stripe does not have on missing_in_stripe rows: no link.
    absent = (
        out["status"].astype("string").eq("missing_in_stripe").fillna(False).astype(bool)
        if "status" in out.columns
        else pd.Series(False, index=out.index)
    )
    for n, col in enumerate(id_columns):
        if col in out.columns:
            values = out[col].astype("string")
            if n == 0:
                values = values.mask(absent)
            ids = ids.fillna(values)
    links = [dashboard_url(i, m) for i, m in zip(ids.tolist(), mode.tolist(), strict=True)]
    out["dashboard_url"] = pd.Series(links, index=out.index, dtype="string")
    return out


def add_subscription_terms(report: pd.DataFrame, subscriptions: pd.DataFrame) -> pd.DataFrame:
    """A subscription report with each row's Stripe amount, currency, interval and period end.

    Looked up by ``(shop_id, stripe_subscription_id)`` in the ``SUBSCRIPTIONS``
    frame; rows whose subscription is not in Stripe (``missing_in_stripe``) or
    that name none keep <NA>. ``unit_amount`` is in minor units of ``currency``.
    """
    out = report.copy()
    wanted = [c for c in SUBSCRIPTION_TERMS if c in subscriptions.columns]
    if not len(out) or not wanted or "stripe_subscription_id" not in out.columns:
        return out
    key = ["shop_id", "stripe_subscription_id"]
    terms = subscriptions[key + wanted].copy()
    terms["shop_id"] = terms["shop_id"].astype("string")
    terms = terms.drop_duplicates(key)
    left = out[key].astype({"shop_id": "string"})
    found = left.merge(terms, on=key, how="left", validate="many_to_one")
    for col in wanted:
        values = found[col].set_axis(out.index)
        if col in out.columns:
            values = out[col].where(out[col].notna(), values) if len(values) else out[col]
        out[col] = values
    return out
