"""The columns and dtypes of every DataFrame opskit returns, declared once.

Conventions: snake_case; Stripe ids ``string``; local ids (shops, accounts,
orders, products) ``string`` too, whatever the database stores (UUID, integer,
text); nullable
dtypes only; money as ``Int64`` minor units beside a ``currency`` column; times
``*_at`` tz-aware UTC; an empty result still has every column with its dtype.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from opskit.common.ids import id_text

UTC_TIME = "datetime64[ns, UTC]"

CUSTOMER_STATUSES = [
    "match",
    "mismatch",
    "no_customer_id",
    "missing_in_stripe",
    "deleted_in_stripe",
    "wrong_shop",
    "mode_mismatch",
    "duplicate_link",
    "orphan_in_stripe",
    "shop_not_configured",
    "shop_error",
]

SUBSCRIPTION_STATUSES = [
    "match",
    "status_drift",
    "price_mismatch",
    "wrong_customer",
    "missing_in_stripe",
    "orphan_in_stripe",
    "multiple_active",
    "shop_not_configured",
    "shop_error",
    # on backends that record no subscription in details (shop-backend): see
    # opskit.core.subscriptions
    "abandoned_checkout",
    "payment_trouble",
    "unknown_product",
    "price_drift",
]

#: How a customer's stored snapshot (details["stripe_customer"]) compares with Stripe.
SNAPSHOT_STATUSES = ["fresh", "stale"]

Spec = Mapping[str, object]

#: Local ids: opaque text in every frame (see :mod:`opskit.common.ids`).
ID_COLUMNS = frozenset({"shop_id", "account_id", "order_id", "product_id"})

SHOPS: Spec = {
    "shop_id": "string",
    "shop_name": "string",
    "mode": "string",  # live / test / none / invalid
    "secret_key": "string",  # masked: sk_live_…abcd
    "public_key": "string",  # publishable keys are not secret, but masked if misplaced
    "key_problem": "string",
}

ACCOUNTS: Spec = {
    "account_id": "string",
    "shop_id": "string",
    "email": "string",
    "name": "string",
    "stripe_customer_id": "string",
    "stripe_customer": "string",  # the stored Customer snapshot, JSON text (shop-backend's sync)
    "stripe_synced_at": UTC_TIME,  # when that snapshot was taken
    "stripe_subscription_id": "string",
    "subscription_status": "string",
    "stripe_price_id": "string",
    "details": "string",  # the raw JSON text, untouched
    "details_error": "string",  # why details could not be read, else <NA>
    "created_at": UTC_TIME,
    "updated_at": UTC_TIME,
    # what else in the row could not be read (an id, a time; that value is <NA>/NaT), else <NA>
    "row_error": "string",
}

CUSTOMERS: Spec = {
    "shop_id": "string",
    "stripe_customer_id": "string",
    "email": "string",
    "name": "string",
    "deleted": "boolean",
    "livemode": "boolean",
    "created_at": UTC_TIME,
    "dashboard_url": "string",  # the customer's page in the shop's Stripe dashboard
    "stripe_object": "string",  # the whole Customer as JSON text (snapshots compare with it)
}

SUBSCRIPTIONS: Spec = {
    "shop_id": "string",
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
    "dashboard_url": "string",  # the subscription's page in the shop's Stripe dashboard
    "stripe_price_ids": "string",  # every item's price, sorted, joined by ","
    "cancel_at": UTC_TIME,  # a scheduled end (Stripe sets it for cancel_at_period_end too)
    "ended_at": UTC_TIME,
    "lookup_keys": "string",  # every item's price lookup key, sorted, joined by ","
    "items": "Int64",  # how many items
}

#: One row per subscription item (a subscription has one or more).
SUBSCRIPTION_ITEMS: Spec = {
    "shop_id": "string",
    "stripe_subscription_id": "string",
    "stripe_subscription_item_id": "string",
    "stripe_customer_id": "string",
    "status": "string",  # the subscription's status
    "stripe_price_id": "string",
    "product": "string",  # the Stripe product id
    "lookup_key": "string",
    "quantity": "Int64",
    "unit_amount": "Int64",  # minor units
    "currency": "string",
    "interval": "string",
    "created_at": UTC_TIME,  # the subscription's
}

PRICES: Spec = {
    "shop_id": "string",
    "stripe_price_id": "string",
    "product": "string",
    "nickname": "string",
    "lookup_key": "string",
    "unit_amount": "Int64",  # minor units
    "currency": "string",
    "interval": "string",  # <NA>: a one-time price
    "active": "boolean",
    "created_at": UTC_TIME,
}

CUSTOMER_REPORT: Spec = {
    "shop_id": "string",
    "shop_name": "string",
    "account_id": "string",
    "stripe_customer_id": "string",
    "status": pd.CategoricalDtype(CUSTOMER_STATUSES, ordered=True),
    "mismatch_fields": "string",  # comma-separated: "email,name"
    "local_email": "string",
    "stripe_email": "string",
    "local_name": "string",
    "stripe_name": "string",
    "detail": "string",
    "suggested_action": "string",
    "dashboard_url": "string",  # the customer's page in the shop's Stripe dashboard
    # backends that keep snapshots (shop-backend): details["stripe_customer"] vs Stripe
    "snapshot_status": pd.CategoricalDtype(SNAPSHOT_STATUSES),  # fresh / stale / <NA>: none
    "snapshot_fields": "string",  # comma-separated fields that differ: "email,address"
    "synced_at": UTC_TIME,  # details["stripe_synced_at"]
}

SUBSCRIPTION_REPORT: Spec = {
    "shop_id": "string",
    "shop_name": "string",
    "account_id": "string",
    "stripe_customer_id": "string",
    "stripe_subscription_id": "string",
    "status": pd.CategoricalDtype(SUBSCRIPTION_STATUSES, ordered=True),
    "local_status": "string",
    "stripe_status": "string",
    "local_price_id": "string",
    "stripe_price_id": "string",  # the item matching local_price_id, else the only item's
    "stripe_price_ids": "string",  # every item's price, sorted, joined by ","
    "ends_at": UTC_TIME,  # when it ends or ended; <NA>: it renews (core.subscription_status)
    "detail": "string",
    "suggested_action": "string",
    # The Stripe subscription's terms, to size a finding (opskit.core.enrich):
    "unit_amount": "Int64",  # minor units of `currency`, per interval
    "currency": "string",
    "interval": "string",
    "current_period_end_at": UTC_TIME,
    "dashboard_url": "string",  # the subscription's (else the customer's) dashboard page
}

#: The backend's orders (shop-backend: float euro totals), amounts in cents.
ORDERS: Spec = {
    "order_id": "string",
    "shop_id": "string",
    "account_id": "string",
    "status": "string",
    "amount": "Int64",  # minor units, from the float total, half-up
    "currency": "string",
    "created_at": UTC_TIME,
    "completed_at": UTC_TIME,
    "row_error": "string",  # what in the row could not be read (that value is <NA>/NaT)
}

#: The backend's products with their recurring list prices (lookup keys name them).
PRODUCTS: Spec = {
    "product_id": "string",
    "shop_id": "string",
    "monthly_amount": "Int64",  # minor units, from recurring_price_monthly
    "yearly_amount": "Int64",
    "currency": "string",
    "row_error": "string",  # what in the row could not be read (a price that is no amount)
}

SYNC_PLAN: Spec = {
    "shop_id": "string",
    "account_id": "string",
    "key": "string",  # the details key to change
    "old_value": "string",  # <NA>: the key is absent
    "new_value": "string",  # <NA>: remove the key
    "reason": "string",
    "source_status": "string",  # the report status the change comes from
}

SYNC_RESULT: Spec = {
    **SYNC_PLAN,
    "outcome": "string",  # applied / already_applied / stale / error / refused
    "audit_id": "Int64",
    "detail": "string",
}

AUDIT: Spec = {
    "audit_id": "Int64",
    "at": UTC_TIME,
    "actor": "string",
    "shop_id": "string",
    "action": "string",
    "target": "string",
    "params": "string",  # JSON, secrets never included
    "idempotency_key": "string",
    "outcome": "string",  # ok / error / refused / pending / unknown
    "result": "string",
    "error": "string",
    "stripe_request_id": "string",
    "completed_at": UTC_TIME,  # when a Stripe write's intent got its outcome
    "resolution": "string",  # how an outcome was found out (lookup by tag, recovery)
}

# ops.refresh() / ops.changes(): one row per Stripe event of interest (see opskit.core.events).
CHANGES: Spec = {
    "shop_id": "string",
    "event_id": "string",
    "event_type": "string",  # customer.updated, charge.refunded, ...
    "created_at": UTC_TIME,  # the event's `created` (when it happened at Stripe)
    "object_type": "string",  # customer / subscription / invoice / payment_intent / charge ...
    "stripe_object_id": "string",
    "stripe_customer_id": "string",
    "account_id": "string",  # the local account linking that customer, <NA> when none
    "report": "string",  # customers / subscriptions / payments: whose statuses `status` uses
    "status": "string",  # that report's status for the object after the change; <NA>: no finding
    "detail": "string",
    "outcome": "string",  # applied / superseded / stale / refetch / recorded / duplicate / ignored
    "outcome_detail": "string",
    "source": "string",  # refresh / webhook
}

# ops.refresh(): what could not be followed by events, per shop.
REFRESH_GAPS: Spec = {
    "shop_id": "string",
    # full_read / skipped_event / shop_error / snapshot_not_written / snapshot_error
    "gap": "string",
    "event_id": "string",
    "event_type": "string",
    "reason": "string",
}

# ops.refresh(): one row per shop.
REFRESH_SHOPS: Spec = {
    "shop_id": "string",
    "mode": "string",  # events / full_read / error / not_configured
    "events_read": "Int64",
    "applied": "Int64",  # local copies written (events applied and objects re-read)
    "skipped": "Int64",  # duplicate, stale, superseded or ignored events
    "requests": "Int64",  # Stripe API requests made for this shop
    "snapshots": "Int64",  # accounts whose Customer snapshot (details) the events updated
    "cursor_at": UTC_TIME,  # events up to here are now known
    "error": "string",
}

# ops.webhook_deliveries(): every delivery the receiver got, raw body not included.
WEBHOOK_DELIVERIES: Spec = {
    "delivery_id": "Int64",
    "received_at": UTC_TIME,
    "shop_id": "string",
    "event_id": "string",
    "event_type": "string",
    "status_code": "Int64",  # what the receiver answered
    "outcome": "string",  # rejected / processed / duplicate / failed / replayed
    "reason": "string",
    "processed_at": UTC_TIME,
    "body_length": "Int64",  # bytes received (the body is kept whole only when signed)
    "body_sha256": "string",  # of the body received; <NA> when it was too large to read
}

# ops.recover(): one row per Stripe-write intent that had no outcome (opskit.writes.recovery).
RECOVERY: Spec = {
    "audit_id": "Int64",  # the intent's audit row, now completed (unless outcome unknown)
    "at": UTC_TIME,  # when the intent was recorded
    "shop_id": AUDIT["shop_id"],
    "action": "string",
    "target": "string",
    "idempotency_key": "string",
    "outcome": "string",  # ok (found in Stripe) / error (not written) / unknown (ask again)
    "result": "string",  # the Stripe object's id when found
    "detail": "string",
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
            elif col in ID_COLUMNS and pd.api.types.is_numeric_dtype(s.dtype):
                # integer ids that went through a float column (NaN rows): "7", never "7.0"
                s = pd.Series(pd.array([id_text(v) for v in s], dtype="string"), index=s.index)
            elif str(s.dtype) != str(dtype):
                s = s.astype(dtype)  # type: ignore[call-overload]
            out[col] = s.reset_index(drop=True)
        else:
            out[col] = pd.Series([pd.NA] * n, dtype=dtype)  # type: ignore[call-overload]
    return pd.DataFrame(out)


# -- the money (issue 15): one frame per grain, Stripe's vocabulary -----------------------------
# Local ids are opaque text; amounts are Int64 minor units beside their currency.

PAYMENT_STATUSES = [
    "match",
    "amount_mismatch",
    "currency_mismatch",
    "partially_refunded",
    "refunded",
    "disputed",
    "ambiguous",
    "paid_no_order",
    "order_unpaid",
    "shop_not_configured",
    "shop_error",
]

MONEY_ORDERS: Spec = ORDERS  # the backend's orders, as Ops.orders() gives them

PAYMENTS: Spec = {  # one payment intent of one shop
    "shop_id": "string",
    "stripe_payment_intent_id": "string",
    "stripe_charge_id": "string",  # the latest charge
    "stripe_customer_id": "string",
    "account_id": "string",  # the local account linking that customer (details)
    "metadata_order_id": "string",  # metadata["order_id"], when someone wrote it
    "stripe_invoice_id": "string",  # set: a subscription invoice's payment, not an order's
    "status": "string",  # the payment intent's status
    "amount": "Int64",
    "amount_received": "Int64",
    "amount_refunded": "Int64",
    "currency": "string",
    "fee": "Int64",  # from the charge's balance transaction
    "net": "Int64",
    "stripe_balance_transaction_id": "string",
    "available_on": UTC_TIME,
    "failure_code": "string",
    "failure_message": "string",
    "stripe_dispute_id": "string",
    "dispute_status": "string",
    "dispute_amount": "Int64",
    "created_at": UTC_TIME,
}

BALANCE_TRANSACTIONS: Spec = {  # one ledger row of one shop's Stripe balance
    "shop_id": "string",
    "stripe_balance_transaction_id": "string",
    "type": "string",
    "reporting_category": "string",
    "amount": "Int64",  # gross, signed
    "fee": "Int64",
    "net": "Int64",
    "currency": "string",
    "source": "string",  # ch_ / re_ / du_ / po_ ...
    "stripe_payment_intent_id": "string",  # the payment the source belongs to, if any
    "status": "string",  # available / pending
    "payout": "string",  # the automatic payout that paid it out (itemization), else <NA>
    "description": "string",
    "created_at": UTC_TIME,
    "available_on": UTC_TIME,
}

PAYOUTS: Spec = {  # one payout of one shop
    "shop_id": "string",
    "payout_id": "string",
    "amount": "Int64",  # what reaches the bank (positive)
    "currency": "string",
    "status": "string",  # paid / pending / in_transit / canceled / failed
    "automatic": "boolean",
    "method": "string",
    "arrival_at": UTC_TIME,  # Stripe's arrival_date
    "created_at": UTC_TIME,
    "stripe_balance_transaction_id": "string",
    "itemized": "boolean",  # False: manual payout, Stripe cannot say what it contains
    "item_count": "Int64",
    "itemized_gross": "Int64",
    "itemized_fee": "Int64",
    "itemized_net": "Int64",  # equals amount when the itemization is complete
    "difference": "Int64",  # amount - itemized_net; <NA> when not itemized
    "check": "string",  # itemized_ok / sum_mismatch / manual_not_itemizable / not_itemized
}

PAYOUT_REPORT: Spec = {  # one (payout, reporting category) line; plus unpaid balance lines
    "shop_id": "string",
    "payout_id": "string",  # <NA> on unpaid_balance lines
    "line": "string",  # category / manual_payout / unpaid_balance
    "reporting_category": "string",
    "count": "Int64",
    "gross": "Int64",
    "fee": "Int64",
    "net": "Int64",
    "currency": "string",
    "automatic": "boolean",
    "status": "string",
    "arrival_at": UTC_TIME,
    "detail": "string",
}

DAILY_OVERVIEW: Spec = {  # one shop (or all shops) x UTC day x currency
    "shop_id": "string",  # <NA> on rows across shops (by="currency")
    "day": UTC_TIME,  # midnight UTC
    "currency": "string",
    "sales": "Int64",  # gross of charges
    "sales_count": "Int64",
    "refunds": "Int64",  # signed (negative)
    "refund_count": "Int64",
    "disputes": "Int64",  # disputes and their reversals, signed
    "adjustments": "Int64",  # other adjustments, signed
    "fees": "Int64",  # what Stripe kept (positive)
    "net": "Int64",  # net of every non-payout row
    "payouts": "Int64",  # paid out to the bank (positive)
    "payout_count": "Int64",
    "failed_charge_count": "Int64",
    "failed_charge_amount": "Int64",
    "end_balance": "Int64",  # the Stripe balance (available + pending) at the day's end
}

PAYMENT_REPORT: Spec = {
    "shop_id": "string",
    "shop_name": "string",
    "order_id": "string",
    "account_id": "string",
    "stripe_payment_intent_id": "string",
    "status": pd.CategoricalDtype(PAYMENT_STATUSES, ordered=True),
    "match_method": "string",  # metadata / scored / <NA>
    "score": "Float64",  # 0..1, 1.0 for a metadata match
    "runner_up_payment_intent_id": "string",  # the next best candidate (or order id's payment)
    "runner_up_score": "Float64",
    "order_status": "string",
    "order_amount": "Int64",
    "paid_amount": "Int64",  # amount_received
    "refunded_amount": "Int64",
    "currency": "string",  # the payment's (else the order's)
    "order_currency": "string",
    "fee": "Int64",
    "net": "Int64",
    "dispute_status": "string",
    "order_created_at": UTC_TIME,
    "paid_at": UTC_TIME,
    "detail": "string",
    "suggested_action": "string",
}

METADATA_PLAN: Spec = {  # proposed writes of metadata["order_id"] into payment intents
    "shop_id": "string",
    "stripe_payment_intent_id": "string",
    "key": "string",
    "old_value": "string",
    "new_value": "string",
    "score": "Float64",
    "reason": "string",
}

METADATA_RESULT: Spec = {
    **METADATA_PLAN,
    "outcome": "string",  # written / already / conflict / error / refused
    "detail": "string",
}
