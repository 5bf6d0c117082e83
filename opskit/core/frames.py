"""The columns and dtypes of every DataFrame opskit returns, declared once.

Conventions: snake_case; Stripe ids ``string``; local ids ``Int64``; nullable
dtypes only; money as ``Int64`` minor units beside a ``currency`` column; times
``*_at`` tz-aware UTC; an empty result still has every column with its dtype.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

UTC_TIME = "datetime64[ns, UTC]"

CUSTOMER_STATUSES = [
    "match",
    "mismatch",
    "no_customer_id",
    "missing_in_stripe",
    "deleted_in_stripe",
    "wrong_shop",
    "duplicate_link",
    "orphan_in_stripe",
    "shop_not_configured",
    "shop_error",
]

SUBSCRIPTION_STATUSES = [
    "match",
    "status_drift",
    "price_mismatch",
    "missing_in_stripe",
    "orphan_in_stripe",
    "multiple_active",
    "shop_not_configured",
    "shop_error",
]

Spec = Mapping[str, object]

SHOPS: Spec = {
    "shop_id": "Int64",
    "shop_name": "string",
    "mode": "string",  # live / test / none / invalid
    "secret_key": "string",  # masked: sk_live_…abcd
    "public_key": "string",  # publishable keys are not secret, but masked if misplaced
    "key_problem": "string",
}

ACCOUNTS: Spec = {
    "account_id": "Int64",
    "shop_id": "Int64",
    "email": "string",
    "name": "string",
    "stripe_customer_id": "string",
    "stripe_subscription_id": "string",
    "subscription_status": "string",
    "stripe_price_id": "string",
    "details": "string",  # the raw JSON text, untouched
    "details_error": "string",  # why details could not be read, else <NA>
    "created_at": UTC_TIME,
    "updated_at": UTC_TIME,
}

CUSTOMERS: Spec = {
    "shop_id": "Int64",
    "stripe_customer_id": "string",
    "email": "string",
    "name": "string",
    "deleted": "boolean",
    "livemode": "boolean",
    "created_at": UTC_TIME,
}

SUBSCRIPTIONS: Spec = {
    "shop_id": "Int64",
    "stripe_subscription_id": "string",
    "stripe_customer_id": "string",
    "status": "string",
    "stripe_price_id": "string",
    "unit_amount": "Int64",  # minor units
    "currency": "string",
    "interval": "string",
    "cancel_at_period_end": "boolean",
    "current_period_end_at": UTC_TIME,
    "created_at": UTC_TIME,
    "canceled_at": UTC_TIME,
}

PRICES: Spec = {
    "shop_id": "Int64",
    "stripe_price_id": "string",
    "product": "string",
    "nickname": "string",
    "unit_amount": "Int64",  # minor units
    "currency": "string",
    "interval": "string",  # <NA>: a one-time price
    "active": "boolean",
    "created_at": UTC_TIME,
}

CUSTOMER_REPORT: Spec = {
    "shop_id": "Int64",
    "shop_name": "string",
    "account_id": "Int64",
    "stripe_customer_id": "string",
    "status": pd.CategoricalDtype(CUSTOMER_STATUSES, ordered=True),
    "mismatch_fields": "string",  # comma-separated: "email,name"
    "local_email": "string",
    "stripe_email": "string",
    "local_name": "string",
    "stripe_name": "string",
    "detail": "string",
    "suggested_action": "string",
}

SUBSCRIPTION_REPORT: Spec = {
    "shop_id": "Int64",
    "shop_name": "string",
    "account_id": "Int64",
    "stripe_customer_id": "string",
    "stripe_subscription_id": "string",
    "status": pd.CategoricalDtype(SUBSCRIPTION_STATUSES, ordered=True),
    "local_status": "string",
    "stripe_status": "string",
    "local_price_id": "string",
    "stripe_price_id": "string",
    "detail": "string",
    "suggested_action": "string",
}

SYNC_PLAN: Spec = {
    "shop_id": "Int64",
    "account_id": "Int64",
    "key": "string",  # the details key to change
    "old_value": "string",  # <NA>: the key is absent
    "new_value": "string",  # <NA>: remove the key
    "reason": "string",
    "source_status": "string",  # the report status the change comes from
}

SYNC_RESULT: Spec = {
    **SYNC_PLAN,
    "outcome": "string",  # applied / stale / error
    "audit_id": "Int64",
    "detail": "string",
}

AUDIT: Spec = {
    "audit_id": "Int64",
    "at": UTC_TIME,
    "actor": "string",
    "shop_id": "Int64",
    "action": "string",
    "target": "string",
    "params": "string",  # JSON, secrets never included
    "idempotency_key": "string",
    "outcome": "string",  # ok / error / refused
    "result": "string",
    "error": "string",
    "stripe_request_id": "string",
}


def empty(spec: Spec) -> pd.DataFrame:
    """A zero-row frame with every column of ``spec`` in its dtype."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in spec.items()})  # type: ignore[call-overload]


def conform(df: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """Order and cast ``df``'s columns to ``spec``; missing columns become all-NA."""
    out = {}
    n = len(df)
    for col, dtype in spec.items():
        if col in df.columns:
            s = df[col]
            if dtype == UTC_TIME:
                s = pd.to_datetime(s, utc=True).astype(UTC_TIME)
            elif str(s.dtype) != str(dtype):
                s = s.astype(dtype)  # type: ignore[call-overload]
            out[col] = s.reset_index(drop=True)
        else:
            out[col] = pd.Series([pd.NA] * n, dtype=dtype)  # type: ignore[call-overload]
    return pd.DataFrame(out)
