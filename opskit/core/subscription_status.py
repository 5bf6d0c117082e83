"""What each Stripe subscription status means for reconciliation: one table, one set of rules.

Stripe's statuses (API 2026-x): ``incomplete``, ``incomplete_expired``, ``trialing``,
``active``, ``past_due``, ``canceled``, ``unpaid``, ``paused``. Every report and
every write guard that asks "is this subscription still there?", "can it bill
the customer?" or "when does it end?" asks here, so the subscription reports
(details-backed and customer-backed) and ``create_subscription`` never disagree.

======================  ====  =======  ==========================================
status                  live  billing  meaning
======================  ====  =======  ==========================================
``active``              yes   yes      paid up, renews
``trialing``            yes   yes      in a trial; bills when it ends
``past_due``            yes   yes      latest invoice failed; Stripe keeps retrying
``unpaid``              yes   no       retries exhausted; invoices are no longer paid
``paused``              yes   no       trial ended without a payment method; resumable
``incomplete``          yes   no       first invoice not paid yet (~23 h to pay)
``incomplete_expired``  no    no       first invoice never paid: ended, terminal
``canceled``            no    no       ended, terminal
======================  ====  =======  ==========================================

- *live* (:func:`is_live`): not ended; a live subscription no account records is
  ``orphan_in_stripe``, and a customer with one cannot get another from opskit
  without ``force=True``.
- *billing* (:func:`counts_for_multiple_active`): it will charge the customer
  again. Two or more billing subscriptions on one customer are ``multiple_active``
  (a double-billing risk), **unless** a subscription is scheduled to end before
  it bills again: ``cancel_at_period_end`` set, or ``cancel_at`` at or before its
  current period end (or ``cancel_at`` set and the period end unknown).
- *ends at* (:func:`ends_at`): when the subscription stops: ``ended_at`` (else
  ``canceled_at``) once ended; ``cancel_at`` when scheduled; the current period
  end when ``cancel_at_period_end``; otherwise it renews (<NA>).
- A status Stripe may add later and opskit does not know counts as live and not
  billing, so it is shown (never hidden) and never blocks as a double charge.

Functions take and return pandas Series (vectorized, for the reports); the
``*_one`` forms take one subscription dict as Stripe returns it (for writes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BILLING",
    "ENDED",
    "LIVE",
    "STATUSES",
    "counts_for_multiple_active",
    "counts_for_multiple_active_one",
    "ends_at",
    "ends_at_one",
    "is_live",
    "is_live_one",
    "scheduled_to_end",
    "status_key",
]

#: Every status Stripe documents, in its lifecycle order.
STATUSES = (
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "unpaid",
    "paused",
    "canceled",
)
#: Ended for good: nothing more happens to them.
ENDED = frozenset({"canceled", "incomplete_expired"})
#: Not ended (any unknown future status counts as live too: see :func:`is_live`).
LIVE = frozenset(set(STATUSES) - ENDED)
#: Will charge the customer again unless scheduled to end.
BILLING = frozenset({"active", "trialing", "past_due"})

UTC = "datetime64[ns, UTC]"


def status_key(status: pd.Series) -> pd.Series:
    """Statuses as compared: trimmed, lower-cased, missing as ``""`` (string dtype)."""
    return status.astype("string").str.strip().str.lower().fillna("")


def is_live(status: pd.Series) -> pd.Series:
    """True where the subscription has not ended (unknown statuses included); bool dtype.

    A missing/blank status is not live (nothing known about it).
    """
    key = status_key(status)
    return (~key.isin(ENDED) & (key != "")).astype(bool)


def _ts(s: pd.Series | None, index: pd.Index) -> pd.Series:
    if s is None:
        return pd.Series(pd.NaT, index=index, dtype=UTC)
    return pd.to_datetime(s, utc=True).astype(UTC)


def _flag(s: pd.Series | None, index: pd.Index) -> np.ndarray:
    if s is None:
        return np.zeros(len(index), dtype=bool)
    return pd.Series(s, index=index).astype("boolean").fillna(False).to_numpy(dtype=bool)


def scheduled_to_end(
    cancel_at_period_end: pd.Series | None,
    cancel_at: pd.Series | None,
    current_period_end: pd.Series | None,
    *,
    index: pd.Index | None = None,
) -> pd.Series:
    """True where the subscription will not bill again: it ends at or before its period end.

    ``cancel_at_period_end`` set, or ``cancel_at`` set and not after the current
    period end (or the period end unknown). The Series share one index; ``index``
    is needed only when all three are None.
    """
    given = [s for s in (cancel_at_period_end, cancel_at, current_period_end) if s is not None]
    if index is None:
        index = given[0].index if given else pd.RangeIndex(0)
    at_end = _flag(cancel_at_period_end, index)
    cancel = _ts(cancel_at, index)
    period = _ts(current_period_end, index)
    early = (cancel.notna() & (period.isna() | (cancel <= period))).to_numpy(dtype=bool)
    return pd.Series(at_end | early, index=index, dtype=bool)


def counts_for_multiple_active(
    status: pd.Series,
    cancel_at_period_end: pd.Series | None = None,
    cancel_at: pd.Series | None = None,
    current_period_end: pd.Series | None = None,
) -> pd.Series:
    """True where the subscription will bill the customer again (see the module table)."""
    billing = status_key(status).isin(BILLING).to_numpy(dtype=bool)
    ending = scheduled_to_end(
        cancel_at_period_end, cancel_at, current_period_end, index=status.index
    ).to_numpy(dtype=bool)
    return pd.Series(billing & ~ending, index=status.index, dtype=bool)


def ends_at(
    status: pd.Series,
    cancel_at_period_end: pd.Series | None = None,
    cancel_at: pd.Series | None = None,
    current_period_end: pd.Series | None = None,
    ended_at: pd.Series | None = None,
    canceled_at: pd.Series | None = None,
) -> pd.Series:
    """When the subscription ends or ended (tz-aware UTC), <NA> when it renews.

    Ended: ``ended_at``, else ``canceled_at``. Live: ``cancel_at``, else the current
    period end when ``cancel_at_period_end``, else <NA>.
    """
    index = status.index
    ended = status_key(status).isin(ENDED).to_numpy(dtype=bool)
    past = _ts(ended_at, index).fillna(_ts(canceled_at, index))
    at_end = _flag(cancel_at_period_end, index)
    period = _ts(current_period_end, index)
    future = _ts(cancel_at, index).fillna(period.where(at_end, pd.NaT))
    out = future.where(~ended, past)
    return out.astype(UTC)


# -- one subscription dict (writes) ------------------------------------------------------------


def _one(sub: Mapping[str, Any]) -> dict[str, pd.Series]:
    items = ((sub.get("items") or {}).get("data") or []) if isinstance(sub, Mapping) else []
    period = sub.get("current_period_end") or min(
        (i.get("current_period_end") for i in items if i and i.get("current_period_end")),
        default=None,
    )

    def series(value: Any, unit: bool = False) -> pd.Series:
        if unit:
            value = pd.to_datetime(value, unit="s", utc=True) if value else pd.NaT
        return pd.Series([value])

    return {
        "status": pd.Series([sub.get("status")], dtype="string"),
        "cancel_at_period_end": pd.Series([bool(sub.get("cancel_at_period_end"))]),
        "cancel_at": series(sub.get("cancel_at"), unit=True),
        "current_period_end": series(period, unit=True),
    }


def is_live_one(sub: Mapping[str, Any]) -> bool:
    """:func:`is_live` for one subscription dict."""
    return bool(is_live(pd.Series([sub.get("status")], dtype="string")).iloc[0])


def counts_for_multiple_active_one(sub: Mapping[str, Any]) -> bool:
    """:func:`counts_for_multiple_active` for one subscription dict (periods from items too)."""
    return bool(counts_for_multiple_active(**_one(sub)).iloc[0])


def ends_at_one(sub: Mapping[str, Any]) -> pd.Timestamp | None:
    """:func:`ends_at` for one subscription dict; None when it renews."""
    parts = _one(sub)
    when = ends_at(
        **parts,
        ended_at=_one_ts(sub.get("ended_at")),
        canceled_at=_one_ts(sub.get("canceled_at")),
    ).iloc[0]
    return None if pd.isna(when) else pd.Timestamp(when)


def _one_ts(value: Any) -> pd.Series:
    return pd.Series([pd.to_datetime(value, unit="s", utc=True) if value else pd.NaT])
