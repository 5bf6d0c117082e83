"""Subscriptions as Stripe serves them at API 2026-10-28: several items, periods on items.

localstripe knows one item per subscription (two answer 500 "Not implemented"),
keeps the period on the subscription and has no ``default_incomplete``. This
module owns the subscription and subscription-item endpoints instead, reusing
localstripe's invoices, payment intents and charges so that one invoice bills
every item and paying it (or confirming its payment intent) activates the
subscription:

- ``POST /v1/subscriptions`` with any number of items (each a distinct recurring
  price of one currency and interval); ``payment_behavior``:
  ``allow_incomplete`` (default: pay now with the subscription's or customer's
  default payment method, else 400 as at Stripe), ``error_if_incomplete`` (a
  decline is a 402 and nothing is created), ``default_incomplete`` (no payment
  method needed: ``incomplete`` until the first invoice's payment intent is
  confirmed), ``pending_if_incomplete`` (treated as ``allow_incomplete``).
  A refused create leaves nothing behind (no invoice, payment intent or charge).
- ``POST /v1/subscriptions/{id}`` adds (``items[n][price]``), changes
  (``items[n][id]`` + ``price``/``quantity``) and removes
  (``items[n][id]`` + ``deleted``) items, and updates the usual fields.
- ``/v1/subscription_items`` (create, retrieve, update, delete, list).
- ``POST /v1/payment_intents/{id}/confirm`` with ``payment_method``.

Shapes: items carry ``current_period_start``/``current_period_end``; the
subscription has no top-level period, ``plan`` or ``quantity`` (removed at
2025-03-31.basil; a request pinned to an older ``Stripe-Version`` still gets
the top-level period). Invoices at the pinned version have no ``payment_intent``
(expand ``latest_invoice.payments`` or ``latest_invoice.confirmation_secret``);
with an older ``Stripe-Version``, ``expand[]=latest_invoice.payment_intent``
works as it did.

Not modelled: prorations (changing items creates no proration invoice items),
renewals (periods only move when a test clock advances), discounts, taxes,
schedules, pauses, ``price_data``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from aiohttp import web
from dateutil.relativedelta import relativedelta
from localstripe import resources as ls
from localstripe.errors import UserError

from opskit.sandbox import patches, versions
from opskit.sandbox.stores import IndexedStore

Handler = Callable[[web.Request], Any]

PAYMENT_BEHAVIORS = (
    "allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete",
)  # fmt: skip
PRORATION_BEHAVIORS = ("always_invoice", "create_prorations", "none")
ENDED = ("canceled", "incomplete_expired")

# Parameters Stripe accepts at the pinned version (stripe-python 16's
# SubscriptionCreateParams / SubscriptionUpdateParams); everything else is
# "Received unknown parameter" (plan, quantity, coupon, prorate, tax_percent ...).
CREATE_PARAMS = {
    "add_invoice_items", "application_fee_percent", "automatic_tax", "backdate_start_date",
    "billing_cycle_anchor", "billing_cycle_anchor_config", "billing_mode", "billing_schedules",
    "billing_thresholds", "cancel_at", "cancel_at_period_end", "collection_method", "currency",
    "customer", "customer_account", "days_until_due", "default_payment_method",
    "default_source", "default_tax_rates", "description", "discounts", "expand",
    "invoice_settings", "items", "metadata", "off_session", "on_behalf_of", "payment_behavior",
    "payment_settings", "pending_invoice_item_interval", "proration_behavior", "transfer_data",
    "trial_end", "trial_from_plan", "trial_period_days", "trial_settings",
}  # fmt: skip
UPDATE_PARAMS = {
    "add_invoice_items", "application_fee_percent", "automatic_tax", "billing_cycle_anchor",
    "billing_schedules", "billing_thresholds", "cancel_at", "cancel_at_period_end",
    "cancellation_details", "collection_method", "days_until_due", "default_payment_method",
    "default_source", "default_tax_rates", "description", "discounts", "expand",
    "invoice_settings", "items", "metadata", "off_session", "on_behalf_of", "pause_collection",
    "payment_behavior", "payment_settings", "pending_invoice_item_interval",
    "proration_behavior", "proration_date", "transfer_data", "trial_end", "trial_from_plan",
    "trial_settings",
}  # fmt: skip
CANCEL_PARAMS = {"cancellation_details", "expand", "invoice_now", "prorate"}
ITEM_PARAMS = {
    "billing_thresholds", "clear_usage", "deleted", "discounts", "id", "metadata", "plan",
    "price", "price_data", "quantity", "tax_rates",
}  # fmt: skip
ITEM_CREATE_PARAMS = {
    "billing_thresholds", "current_trial", "discounts", "expand", "metadata", "payment_behavior",
    "plan", "price", "price_data", "proration_behavior", "proration_date", "quantity",
    "subscription", "tax_rates",
}  # fmt: skip
ITEM_UPDATE_PARAMS = ITEM_CREATE_PARAMS - {"subscription"} | {"off_session"}
ITEM_DELETE_PARAMS = {"clear_usage", "proration_behavior", "proration_date"}
CONFIRM_PARAMS = {
    "allowed_payment_method_types", "amount_details", "amount_to_confirm", "capture_method",
    "confirmation_token", "error_on_requires_action", "excluded_payment_method_types", "expand",
    "hooks", "mandate", "mandate_data", "off_session", "payment_details", "payment_method",
    "payment_method_data", "payment_method_options", "radar_options", "receipt_email",
    "return_url", "setup_future_usage", "shipping", "use_stripe_sdk",
}  # fmt: skip


# ---------------------------------------------------------------- helpers


def store() -> IndexedStore:
    return cast(IndexedStore, ls.store)


def now() -> int:
    """The current time of the request (a test clock's frozen time when one applies)."""
    return int(time.time())


def unknown_param(name: str) -> UserError:
    return UserError(
        400, f"Received unknown parameter: {name}", {"param": name, "code": "parameter_unknown"}
    )


def missing_param(name: str) -> UserError:
    return UserError(
        400, f"Missing required param: {name}.", {"param": name, "code": "parameter_missing"}
    )


def invalid(param: str, message: str) -> UserError:
    return UserError(400, message, {"param": param})


def check_params(data: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    for k in data:
        if k not in allowed:
            raise unknown_param(prefix + k)


def to_bool(v: Any, name: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise invalid(name, f"Invalid boolean: {v}")


def to_int(v: Any, name: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise invalid(name, f"Invalid integer: {v}") from None


def as_list(v: Any, name: str) -> list[Any]:
    if v in (None, ""):
        return []
    if isinstance(v, dict) and all(str(k).isdigit() for k in v):
        return [v[k] for k in sorted(v, key=int)]
    if not isinstance(v, list):
        raise invalid(name, f"Invalid array: {name}")
    return v


def metadata_of(v: Any, name: str = "metadata") -> dict[str, str]:
    if v in (None, ""):
        return {}
    if not isinstance(v, dict):
        raise invalid(name, "Invalid object")
    return {str(k): str(x) for k, x in v.items() if x != ""}


def merge_metadata(old: dict[str, Any], new: Any) -> dict[str, Any]:
    if new == "":
        return {}
    if not isinstance(new, dict):
        raise invalid("metadata", "Invalid object")
    out = dict(old or {})
    for k, v in new.items():
        if v == "":
            out.pop(str(k), None)
        else:
            out[str(k)] = str(v)
    return out


def add_interval(ts: int, interval: str, count: int, times: int = 1) -> int:
    """``ts`` moved on by ``times`` billing intervals (calendar months, clamped)."""
    start = datetime.fromtimestamp(ts, tz=UTC)
    n = count * times
    step = {
        "day": relativedelta(days=n),
        "week": relativedelta(weeks=n),
        "month": relativedelta(months=n),
        "year": relativedelta(years=n),
    }[interval]
    return int((start + step).timestamp())


def get_price(price_id: Any, param: str) -> Any:
    if not isinstance(price_id, str) or not price_id:
        raise invalid(param, f"Invalid string: {price_id!r}")
    plan = store().get_obj("plan", price_id)
    if plan is None:
        raise UserError(
            404,
            f"No such price: '{price_id}'",
            {"code": "resource_missing", "param": param},
        )
    return plan


def check_recurring(plan: Any, param: str) -> None:
    if getattr(plan, "_one_time", False):
        raise invalid(
            param,
            "The price specified is set to `type=one_time` but this field only accepts "
            "prices with `type=recurring`.",
        )
    if not plan.active:
        raise invalid(
            param, "The price specified is inactive. This field only accepts active prices."
        )


def plan_dict(plan: Any) -> dict[str, Any]:
    """A price shown as the legacy ``plan`` object that subscription items still carry."""
    return {
        "id": plan.id,
        "object": "plan",
        "active": plan.active,
        "amount": plan.amount,
        "amount_decimal": str(plan.amount),
        "billing_scheme": plan.billing_scheme,
        "created": plan.created,
        "currency": plan.currency,
        "interval": plan.interval,
        "interval_count": plan.interval_count,
        "livemode": False,
        "metadata": dict(plan.metadata or {}),
        "meter": None,
        "nickname": plan.nickname,
        "product": plan.product,
        "tiers_mode": plan.tiers_mode,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": plan.usage_type,
    }


# ---------------------------------------------------------------- objects


def item_period(si: Any) -> tuple[int, int]:
    start = si.__dict__.get("_period_start")
    end = si.__dict__.get("_period_end")
    if start is not None and end is not None:
        return int(start), int(end)
    sub = store().get_obj("subscription", si._subscription) if si._subscription else None
    begin = int(getattr(sub, "start_date", None) or si.created)
    return begin, add_interval(begin, si.plan.interval, si.plan.interval_count)


def item_dict(si: Any, expand: list[str] | None = None) -> dict[str, Any]:
    start, end = item_period(si)
    out = {
        "id": si.id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": si.created,
        "current_period_end": end,
        "current_period_start": start,
        "discounts": [],
        "metadata": dict(si.metadata or {}),
        "plan": plan_dict(si.plan),
        "price": patches.price_dict(si.plan),
        "quantity": si.quantity,
        "subscription": si._subscription,
        "tax_rates": [],
    }
    for path in expand or []:
        expand_path(out, path)
    return out


class Subscription(ls.Subscription):
    """A subscription built here (never through localstripe's one-item constructor).

    It stays an ``ls.Subscription`` so localstripe's invoices and payment
    intents call back into it when the first invoice is paid or fails.
    """

    def __init__(self) -> None:  # fields are set by build()
        ls.StripeObject.__init__(self)

    # localstripe's invoices read the period from the subscription.
    @property
    def current_period_start(self) -> int:  # type: ignore[override]
        return item_period(self.items._list[0])[0]

    @property
    def current_period_end(self) -> int:  # type: ignore[override]
        return item_period(self.items._list[0])[1]

    @property
    def plan(self) -> Any:  # type: ignore[override]
        return self.items._list[0].plan

    status: str

    def _on_initial_payment_success(self, invoice: Any) -> None:
        if self.status in ("incomplete", "past_due", "unpaid"):
            self.status = "active"
            emit("customer.subscription.updated", self)

    def _on_initial_payment_failure_now(self, invoice: Any) -> None:
        if self._payment_behavior == "error_if_incomplete" and self.status == "incomplete":
            charge = invoice.charge
            raise decline_error(charge)

    def _on_initial_payment_failure_later(self, invoice: Any) -> None:
        pass  # stays incomplete, expires after 23 hours at Stripe

    def _export(self, expand: Any = None) -> dict[str, Any]:
        return subscription_dict(self, expand)


def subscription_dict(sub: Any, expand: Any = None) -> dict[str, Any]:
    items = list(sub.items._list)
    out: dict[str, Any] = {
        "id": sub.id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": sub.__dict__.get("_application_fee_percent"),
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": sub.billing_cycle_anchor,
        "billing_cycle_anchor_config": None,
        "billing_mode": {
            "flexible": {"proration_discounts": "included"},
            "type": "flexible",
            "updated_at": sub.created,
        },
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": sub.cancel_at,
        "cancel_at_period_end": bool(sub.cancel_at_period_end),
        "canceled_at": sub.canceled_at,
        "cancellation_details": dict(sub._cancellation_details),
        "collection_method": sub.collection_method,
        "created": sub.created,
        "currency": sub.currency,
        "customer": sub.customer,
        "customer_account": None,
        "days_until_due": sub.days_until_due,
        "default_payment_method": sub.default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": sub.description,
        "discounts": [],
        "ended_at": sub.ended_at,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [item_dict(si) for si in items],
            "has_more": False,
            "url": "/v1/subscription_items?subscription=" + sub.id,
        },
        "latest_invoice": sub.latest_invoice,
        "livemode": False,
        "managed_payments": None,
        "metadata": dict(sub.metadata or {}),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": dict(sub._payment_settings),
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": sub.start_date,
        "status": sub.status,
        "test_clock": sub.__dict__.get("test_clock"),
        "transfer_data": None,
        "trial_end": sub.trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": sub.trial_start,
    }
    if not versions.at_least(versions.BASIL) and items:
        # Before 2025-03-31.basil the period was on the subscription too.
        out["current_period_start"], out["current_period_end"] = item_period(items[0])
    if isinstance(expand, str):
        expand = [expand]
    for path in expand or []:
        expand_path(out, path)
    return out


# ---------------------------------------------------------------- invoices (version-shaped)


def invoice_dict(inv: Any) -> dict[str, Any]:
    return cast(dict[str, Any], inv._export())  # version-shaped (shapes.invoice_view)


def invoice_payments(inv: Any) -> dict[str, Any]:
    data = []
    if inv.payment_intent:
        pi = ls.PaymentIntent._api_retrieve(inv.payment_intent)
        paid = inv.status == "paid"
        data.append(
            {
                "id": "inpay_" + inv.id[3:],
                "object": "invoice_payment",
                "amount_paid": inv.total if paid else None,
                "amount_requested": inv.total,
                "created": pi.created,
                "currency": inv.currency,
                "invoice": inv.id,
                "is_default": True,
                "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": pi.id},
                "status": "paid" if paid else ("canceled" if inv.status == "void" else "open"),
                "status_transitions": {
                    "canceled_at": None,
                    "paid_at": inv.status_transitions.get("paid_at"),
                },
            }
        )
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": "/v1/invoice_payments?invoice=" + inv.id,
    }


def confirmation_secret(inv: Any) -> dict[str, Any] | None:
    if not inv.payment_intent or inv.status != "open":
        return None
    pi = ls.PaymentIntent._api_retrieve(inv.payment_intent)
    return {"client_secret": pi.client_secret, "type": "payment_intent"}


# Fields an invoice returns only when expanded, at the pinned version.
INCLUDABLE: dict[str, Callable[[Any], Any]] = {
    "payments": invoice_payments,
    "confirmation_secret": confirmation_secret,
}


def retrieve_dict(id_: str) -> dict[str, Any]:
    if id_.startswith("price_"):
        plan = store().get_obj("plan", id_)
        if plan is not None:
            return patches.price_dict(plan)
    if id_.startswith("cus_") and store().get_obj("customer", id_) is None:
        tomb = store().tombstones.get(id_)
        if tomb is not None:
            return dict(tomb)
    cls = ls.StripeObject._get_class_for_id(id_)
    if cls is None:
        raise UserError(400, f"This property cannot be expanded ({id_}).")
    obj = cls._api_retrieve(id_)
    if obj.object == "invoice":
        return invoice_dict(obj)
    return cast(dict[str, Any], obj._export())


def expand_path(obj: Any, path: str, full: str | None = None) -> None:
    """Expand ``path`` (``a.b.c``) inside the exported dict ``obj`` in place."""
    full = full or path
    if isinstance(obj, list):
        for x in obj:
            expand_path(x, path, full)
        return
    if not isinstance(obj, dict):
        return
    head, _, rest = path.partition(".")
    if head not in obj and obj.get("object") == "invoice" and head in INCLUDABLE:
        inv = ls.Invoice._api_retrieve(obj["id"])
        obj[head] = INCLUDABLE[head](inv)
    if head not in obj:
        raise UserError(400, f"This property cannot be expanded ({head}).", {"param": "expand"})
    value = obj[head]
    if isinstance(value, str) and head != "id":
        value = obj[head] = retrieve_dict(value)
    if rest and value is not None:
        expand_path(value, rest, full)


def expand_list(data: dict[str, Any]) -> list[str]:
    exp = data.pop("expand", None)
    out = as_list(exp, "expand") if not isinstance(exp, str) else [exp]
    if any(len(p.split(".")) > 4 for p in out):
        raise invalid("expand", "You cannot expand more than 4 levels of a property.")
    return [str(p) for p in out]


def emit(kind: str, obj: Any) -> None:
    if not patches.seeding:
        ls.schedule_webhook(ls.Event(kind, obj))


def decline_error(charge: Any) -> UserError:
    """The 402 of a declined first payment (error_if_incomplete)."""
    body: dict[str, Any] = {"code": getattr(charge, "failure_code", None) or "card_declined"}
    if charge is not None:
        body["charge"] = charge.id
        decline = charge.__dict__.get("_decline_code")
        if decline:
            body["decline_code"] = decline
    err = UserError(
        402, getattr(charge, "failure_message", None) or "Your card was declined.", body
    )
    return err


# ---------------------------------------------------------------- building


def parse_items(raw: Any, param: str = "items") -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(as_list(raw, param)):
        name = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise invalid(name, f"Invalid object: {name}")
        check_params(item, ITEM_PARAMS, name + "[")
        out.append(item)
    return out


def item_spec(item: dict[str, Any], name: str) -> tuple[Any, int]:
    if "price_data" in item:
        raise invalid(name + "[price_data]", "price_data is not supported by the opskit sandbox")
    price = item.get("price", item.get("plan"))
    if price is None:
        raise missing_param(name + "[price]")
    plan = get_price(price, name + "[price]")
    check_recurring(plan, name + "[price]")
    qty = to_int(item.get("quantity", 1), name + "[quantity]")
    if qty < 0:
        raise invalid(name + "[quantity]", "Invalid quantity: must be zero or more")
    return plan, qty


def check_compatible(plans: list[Any], param: str) -> None:
    seen: set[str] = set()
    for p in plans:
        if p.id in seen:
            raise invalid(
                param,
                f"Cannot add multiple subscription items with the same price: {p.id}",
            )
        seen.add(p.id)
    first = plans[0]
    for p in plans[1:]:
        if p.currency != first.currency:
            raise invalid(
                param,
                "Currency and interval fields must match across all prices on this "
                "subscription. Found mismatch in currency field.",
            )
        if (p.interval, p.interval_count) != (first.interval, first.interval_count):
            raise invalid(
                param,
                "Currency and interval fields must match across all prices on this "
                "subscription. Found mismatch in interval field.",
            )


def new_item(sub: Any, plan: Any, qty: int, metadata: dict[str, str], start: int, end: int) -> Any:
    si = ls.SubscriptionItem(subscription=sub.id, plan=plan.id, quantity=max(qty, 1))
    si.quantity = qty
    si.metadata = metadata
    si._period_start = start
    si._period_end = end
    return si


def build(
    customer: str,
    lines: list[tuple[Any, int, dict[str, str]]],
    *,
    status: str = "incomplete",
    metadata: dict[str, str] | None = None,
    start: int | None = None,
    trial_end: int | None = None,
    billing_cycle_anchor: int | None = None,
    default_payment_method: str | None = None,
    description: str | None = None,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
    payment_settings: dict[str, Any] | None = None,
    payment_behavior: str = "allow_incomplete",
    test_clock: str | None = None,
) -> Subscription:
    """A subscription object in the current store (no invoice, no event)."""
    sub = Subscription()
    t0 = int(start if start is not None else now())
    plans = [p for p, _, _ in lines]
    first = plans[0]
    if trial_end is not None:
        anchor = billing_cycle_anchor or trial_end
        end = trial_end
    else:
        anchor = billing_cycle_anchor or t0
        end = anchor if anchor > t0 else add_interval(t0, first.interval, first.interval_count)
    sub.customer = customer
    sub.metadata = dict(metadata or {})
    sub.status = status
    sub.start_date = t0
    sub.billing_cycle_anchor = anchor
    sub.trial_start = t0 if trial_end is not None else None
    sub.trial_end = trial_end
    sub.cancel_at_period_end = False
    sub.cancel_at = None
    sub.canceled_at = None
    sub.ended_at = None
    sub.latest_invoice = None
    sub.default_payment_method = default_payment_method
    sub.description = description
    sub.collection_method = collection_method
    sub.days_until_due = days_until_due
    sub.currency = first.currency
    sub.test_clock = test_clock
    # localstripe attributes its invoice code reads; private so they are never exported.
    sub.tax_percent = None
    sub.default_tax_rates = None
    sub._payment_behavior = payment_behavior
    sub._enable_incomplete_payments = payment_behavior != "error_if_incomplete"
    sub._cancellation_details = {"comment": None, "feedback": None, "reason": None}
    sub._payment_settings = {
        "payment_method_options": None,
        "payment_method_types": None,
        "save_default_payment_method": "off",
        **(payment_settings or {}),
    }
    sub.items = ls.List("/v1/subscription_items?subscription=" + sub.id)
    for plan, qty, md in lines:
        sub.items._list.append(new_item(sub, plan, qty, md, t0, end))
    return sub


def payment_method_for(sub: Subscription) -> Any:
    if sub.default_payment_method:
        return ls.PaymentMethod._api_retrieve(sub.default_payment_method)
    cus = ls.Customer._api_retrieve(sub.customer)
    return cus._get_default_payment_method_or_source()


def first_invoice(sub: Subscription, behavior: str) -> None:
    """Bill every item on one invoice and pay it as ``payment_behavior`` says."""
    if sub.status == "trialing":
        return
    inv = ls.Invoice(
        customer=sub.customer,
        subscription=sub.id,
        items=list(sub.items._list),
        date=sub.start_date,
    )
    inv.billing_reason = "subscription_create"
    inv.collection_method = sub.collection_method
    inv._finalize()
    if inv.total <= 0:
        inv._on_payment_success()
        return
    if sub.collection_method == "send_invoice":
        sub.status = "active"
        return
    pm = None if behavior == "default_incomplete" else payment_method_for(sub)
    if pm is None and behavior != "default_incomplete":
        raise UserError(
            400,
            "This customer has no attached payment source or default payment method. "
            "Please consider adding a default payment method. For more information, visit "
            "https://stripe.com/docs/billing/subscriptions/payment-methods-setting"
            "#payment-method-priority.",
            {"code": "resource_missing"},
        )
    pi = ls.PaymentIntent(
        amount=inv.total,
        currency=inv.currency,
        customer=sub.customer,
        payment_method=pm.id if pm is not None else None,
    )
    pi.description = "Subscription creation"
    pi.receipt_email = None
    pi.automatic_payment_methods = None
    pi.setup_future_usage = None
    inv.payment_intent = pi.id
    pi.invoice = inv.id
    if pm is not None:
        pi._confirm(on_failure_now=lambda: inv._on_payment_failure_now())


# ---------------------------------------------------------------- handlers


async def body(request: web.Request) -> dict[str, Any]:
    return dict(await patches.ls_server.get_post_data(request) or {})


def query(request: web.Request) -> dict[str, Any]:
    return dict(patches.ls_server.unflatten_data(request.query) or {})


def json_response(obj: Any, status: int = 200) -> web.Response:
    import json

    return web.Response(
        body=json.dumps(obj).encode(), status=status, content_type="application/json"
    )


def get_sub(id_: str) -> Subscription:
    obj = store().get_obj("subscription", id_)
    if obj is None:
        raise UserError(
            404, f"No such subscription: '{id_}'", {"code": "resource_missing", "param": "id"}
        )
    return cast(Subscription, obj)


def _customer(cid: Any) -> Any:
    if not isinstance(cid, str) or not cid:
        raise missing_param("customer")
    cus = store().get_obj("customer", cid)
    if cus is None:
        raise UserError(
            404,
            f"No such customer: '{cid}'",
            {"code": "resource_missing", "param": "customer"},
        )
    return cus


def _behavior(v: Any) -> str:
    b = v or "allow_incomplete"
    if b not in PAYMENT_BEHAVIORS:
        raise invalid(
            "payment_behavior",
            "Invalid payment_behavior: must be one of allow_incomplete, default_incomplete, "
            "error_if_incomplete, or pending_if_incomplete",
        )
    return str(b)


async def subscription_create(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    check_params(data, CREATE_PARAMS)
    expand = expand_list(data)
    cus = _customer(data.get("customer"))
    raw_items = parse_items(data.get("items"))
    if not raw_items:
        raise missing_param("items")
    lines = []
    for i, item in enumerate(raw_items):
        plan, qty = item_spec(item, f"items[{i}]")
        lines.append((plan, qty, metadata_of(item.get("metadata"), f"items[{i}][metadata]")))
    check_compatible([p for p, _, _ in lines], "items")
    behavior = _behavior(data.get("payment_behavior"))
    pm = data.get("default_payment_method") or None
    if pm is not None:
        ls.PaymentMethod._api_retrieve(pm)
    trial_end = None
    t_now = t0 = now_for(cus.id)
    if data.get("backdate_start_date") not in (None, ""):
        t0 = to_int(data["backdate_start_date"], "backdate_start_date")
        if t0 > t_now:
            raise invalid("backdate_start_date", "backdate_start_date must be in the past.")
    if data.get("trial_end") not in (None, ""):
        te = data["trial_end"]
        trial_end = t_now if te == "now" else to_int(te, "trial_end")
        if te != "now" and trial_end <= t_now:
            raise invalid(
                "trial_end", "Invalid timestamp: must be an integer Unix timestamp in the future."
            )
    elif data.get("trial_period_days") not in (None, ""):
        days = to_int(data["trial_period_days"], "trial_period_days")
        if days > 0:
            trial_end = t0 + days * 86400
    anchor = None
    if data.get("billing_cycle_anchor") not in (None, ""):
        anchor = to_int(data["billing_cycle_anchor"], "billing_cycle_anchor")
    method = data.get("collection_method") or "charge_automatically"
    if method not in ("charge_automatically", "send_invoice"):
        raise invalid("collection_method", "Invalid collection_method")
    due = data.get("days_until_due")
    if method == "send_invoice" and due in (None, ""):
        raise invalid("days_until_due", "Missing required param: days_until_due.")
    ps = data.get("payment_settings")
    with store().all_or_nothing():
        sub = build(
            cus.id,
            lines,
            status="trialing" if trial_end is not None and trial_end > t0 else "incomplete",
            metadata=metadata_of(data.get("metadata")),
            start=t0,
            trial_end=trial_end if trial_end is not None and trial_end > t0 else None,
            billing_cycle_anchor=anchor,
            default_payment_method=pm,
            description=data.get("description") or None,
            collection_method=method,
            days_until_due=to_int(due, "days_until_due") if due not in (None, "") else None,
            payment_settings=ps if isinstance(ps, dict) else None,
            payment_behavior=behavior,
            test_clock=cus.__dict__.get("test_clock"),
        )
        if data.get("cancel_at_period_end") not in (None, ""):
            sub.cancel_at_period_end = to_bool(data["cancel_at_period_end"], "cancel_at_period_end")
            if sub.cancel_at_period_end:
                sub.cancel_at = sub.current_period_end
        if data.get("cancel_at") not in (None, ""):
            sub.cancel_at = to_int(data["cancel_at"], "cancel_at")
        first_invoice(sub, behavior)
        out = subscription_dict(sub, expand)
    emit("customer.subscription.created", sub)
    return json_response(out)


async def subscription_retrieve(request: web.Request) -> web.StreamResponse:
    data = query(request)
    expand = expand_list(data)
    check_params(data, set())
    return json_response(subscription_dict(get_sub(request.match_info["id"]), expand))


def apply_items(sub: Subscription, raw: Any, param: str = "items") -> None:
    """Add, change and delete items as ``items[n]`` asks (validated before any change)."""
    current = {si.id: si for si in sub.items._list}
    adds: list[tuple[Any, int, dict[str, str]]] = []
    changes: list[tuple[Any, Any, int | None, Any]] = []
    deletes: set[str] = set()
    for i, item in enumerate(parse_items(raw, param)):
        name = f"{param}[{i}]"
        iid = item.get("id")
        if iid is not None and iid not in current:
            raise invalid(
                name + "[id]",
                f"The subscription item {iid} does not belong to the subscription {sub.id}.",
            )
        if (
            iid is not None
            and item.get("deleted") not in (None, "")
            and to_bool(item["deleted"], name + "[deleted]")
        ):
            deletes.add(iid)
            continue
        if iid is None:
            plan, qty = item_spec(item, name)
            adds.append((plan, qty, metadata_of(item.get("metadata"), name + "[metadata]")))
            continue
        si = current[iid]
        new_plan = None
        if item.get("price", item.get("plan")) is not None:
            new_plan = get_price(item.get("price", item.get("plan")), name + "[price]")
            check_recurring(new_plan, name + "[price]")
        new_qty = to_int(item["quantity"], name + "[quantity]") if "quantity" in item else None
        changes.append((si, new_plan, new_qty, item.get("metadata")))
    remaining = [si for si in sub.items._list if si.id not in deletes]
    plans = [
        (next((c[1] for c in changes if c[0] is si and c[1] is not None), si.plan))
        for si in remaining
    ] + [p for p, _, _ in adds]
    if not plans:
        raise invalid(
            param,
            "A subscription must have at least one active item. To cancel a subscription, "
            "use the cancel endpoint (DELETE /v1/subscriptions/{id}).",
        )
    check_compatible(plans, param)
    start, end = item_period(sub.items._list[0])
    for si, new_plan, new_qty, md in changes:
        if new_plan is not None:
            si.plan = new_plan
        if new_qty is not None:
            si.quantity = new_qty
        if md is not None:
            si.metadata = merge_metadata(si.metadata, md)
    for iid in deletes:
        store().forget("subscription_item:" + iid)
    sub.items._list = [si for si in sub.items._list if si.id not in deletes]
    t = now()
    for plan, qty, md in adds:
        sub.items._list.append(new_item(sub, plan, qty, md, min(max(t, start), end), end))
    if sub.items._list:
        sub.currency = sub.items._list[0].plan.currency


async def subscription_update(request: web.Request) -> web.StreamResponse:
    sub = get_sub(request.match_info["id"])
    data = await body(request)
    check_params(data, UPDATE_PARAMS)
    expand = expand_list(data)
    if sub.status in ENDED:
        allowed = {"metadata", "cancellation_details"}
        if set(data) - allowed:
            raise UserError(
                400,
                f"A canceled subscription can only update its cancellation_details and "
                f"metadata. '{sub.id}' is canceled.",
            )
    if "payment_behavior" in data:
        _behavior(data["payment_behavior"])
    if "proration_behavior" in data and data["proration_behavior"] not in PRORATION_BEHAVIORS:
        raise invalid("proration_behavior", "Invalid proration_behavior")
    pm = data.get("default_payment_method")
    if pm:
        ls.PaymentMethod._api_retrieve(pm)
    with store().all_or_nothing():
        if "items" in data:
            apply_items(sub, data["items"])
        if "metadata" in data:
            sub.metadata = merge_metadata(sub.metadata, data["metadata"])
        if "cancel_at_period_end" in data:
            flag = to_bool(data["cancel_at_period_end"], "cancel_at_period_end")
            sub.cancel_at_period_end = flag
            sub.cancel_at = sub.current_period_end if flag else None
        if "cancel_at" in data:
            ca = data["cancel_at"]
            sub.cancel_at = None if ca == "" else to_int(ca, "cancel_at")
            sub.cancel_at_period_end = sub.cancel_at is not None and (
                sub.cancel_at == sub.current_period_end
            )
        if "default_payment_method" in data:
            sub.default_payment_method = pm or None
        if "description" in data:
            sub.description = data["description"] or None
        if "trial_end" in data:
            te = data["trial_end"]
            sub.trial_end = now() if te == "now" else to_int(te, "trial_end")
            if sub.trial_end <= now() and sub.status == "trialing":
                sub.status = "active"
        cd = data.get("cancellation_details")
        if isinstance(cd, dict):
            for k in ("comment", "feedback"):
                if k in cd:
                    sub._cancellation_details[k] = cd[k] or None
        ps = data.get("payment_settings")
        if isinstance(ps, dict):
            sub._payment_settings.update(ps)
        if "collection_method" in data:
            sub.collection_method = data["collection_method"]
        out = subscription_dict(sub, expand)
    emit("customer.subscription.updated", sub)
    return json_response(out)


def now_for(customer_id: Any) -> int:
    """The time for ``customer_id``'s objects: its test clock's frozen time, else now."""
    cus = store().get_obj("customer", str(customer_id)) if customer_id else None
    clock_id = cus.__dict__.get("test_clock") if cus is not None else None
    clock = store().get("test_clock:" + clock_id) if clock_id else None
    return int(clock.frozen_time) if clock is not None else now()


def expire(sub: Subscription, at: int) -> None:
    """``incomplete`` for 23 hours: ``incomplete_expired``, its invoice voided."""
    sub.status = "incomplete_expired"
    sub.ended_at = at
    _void_open_invoice(sub, at)


def _void_open_invoice(sub: Any, t: int) -> None:
    if sub.latest_invoice:
        inv = store().get_obj("invoice", sub.latest_invoice)
        if inv is not None and inv.status == "open" and inv.payment_intent:
            pi = store().get_obj("payment_intent", inv.payment_intent)
            if pi is not None and pi.status in (
                "requires_payment_method",
                "requires_confirmation",
                "requires_action",
            ):
                pi._canceled = True
            inv._voided = True
            inv.status_transitions["voided_at"] = t


def cancel(
    sub: Subscription, reason: str = "cancellation_requested", at: int | None = None
) -> None:
    t = at if at is not None else now_for(sub.customer)
    sub.status = "canceled"
    sub.canceled_at = t
    sub.ended_at = t
    sub.cancel_at_period_end = False
    sub._cancellation_details["reason"] = reason
    _void_open_invoice(sub, t)
    emit("customer.subscription.deleted", sub)


async def subscription_cancel(request: web.Request) -> web.StreamResponse:
    sub = get_sub(request.match_info["id"])
    data = query(request)
    if request.can_read_body:
        data.update(await body(request))
    check_params(data, CANCEL_PARAMS)
    expand = expand_list(data)
    if sub.status in ENDED:
        raise UserError(
            400,
            f"A canceled subscription can only update its cancellation_details and metadata. "
            f"'{sub.id}' is canceled.",
        )
    cd = data.get("cancellation_details")
    cancel(sub)
    if isinstance(cd, dict):
        for k in ("comment", "feedback"):
            if k in cd:
                sub._cancellation_details[k] = cd[k] or None
    return json_response(subscription_dict(sub, expand))


def cancel_customer_subscriptions(customer_id: str) -> None:
    """Stripe cancels a deleted customer's subscriptions at once."""
    for key in [k for k in store() if k.startswith("subscription:")]:
        sub = store().get(key)
        if sub is not None and sub.customer == customer_id and sub.status not in ENDED:
            cancel(sub)


# ---------------------------------------------------------------- subscription items


def get_item(id_: str) -> Any:
    si = store().get_obj("subscription_item", id_)
    if si is None:
        raise UserError(
            404,
            f"No such subscription item: '{id_}'",
            {"code": "resource_missing", "param": "id"},
        )
    return si


async def item_create(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    check_params(data, ITEM_CREATE_PARAMS)
    expand = expand_list(data)
    sid = data.pop("subscription", None)
    if not sid:
        raise missing_param("subscription")
    sub = get_sub(sid)
    if sub.status in ENDED:
        raise invalid("subscription", f"The subscription {sid} is canceled.")
    item = {
        k: data[k] for k in ("price", "plan", "price_data", "quantity", "metadata") if k in data
    }
    with store().all_or_nothing():
        apply_items(sub, [item], "items")
        si = sub.items._list[-1]
        out = item_dict(si, expand)
    emit("customer.subscription.updated", sub)
    return json_response(out)


async def item_retrieve(request: web.Request) -> web.StreamResponse:
    data = query(request)
    expand = expand_list(data)
    check_params(data, set())
    return json_response(item_dict(get_item(request.match_info["id"]), expand))


async def item_update(request: web.Request) -> web.StreamResponse:
    si = get_item(request.match_info["id"])
    data = await body(request)
    check_params(data, ITEM_UPDATE_PARAMS)
    expand = expand_list(data)
    sub = get_sub(si._subscription)
    item: dict[str, Any] = {
        k: data[k] for k in ("price", "plan", "quantity", "metadata") if k in data
    }
    item["id"] = si.id
    with store().all_or_nothing():
        apply_items(sub, [item], "items")
        out = item_dict(si, expand)
    emit("customer.subscription.updated", sub)
    return json_response(out)


async def item_delete(request: web.Request) -> web.StreamResponse:
    si = get_item(request.match_info["id"])
    data = query(request)
    if request.can_read_body:
        data.update(await body(request))
    check_params(data, ITEM_DELETE_PARAMS)
    sub = get_sub(si._subscription)
    apply_items(sub, [{"id": si.id, "deleted": "true"}], "items")
    emit("customer.subscription.updated", sub)
    return json_response({"id": si.id, "object": "subscription_item", "deleted": True})


async def item_list(request: web.Request) -> web.StreamResponse:
    data = query(request)
    expand = [e[5:] if e.startswith("data.") else e for e in expand_list(data)]
    sid = data.pop("subscription", None)
    for k in ("limit", "starting_after", "ending_before"):
        data.pop(k, None)
    check_params(data, set())
    if not sid:
        raise missing_param("subscription")
    sub = get_sub(sid)
    return json_response(
        {
            "object": "list",
            "data": [item_dict(si, expand) for si in sub.items._list],
            "has_more": False,
            "url": "/v1/subscription_items",
        }
    )


# ---------------------------------------------------------------- payment intents


async def payment_intent_confirm(request: web.Request) -> web.StreamResponse:
    id_ = request.match_info["id"]
    pi = store().get_obj("payment_intent", id_)
    if pi is None:
        raise UserError(
            404, f"No such payment_intent: '{id_}'", {"code": "resource_missing", "param": "intent"}
        )
    data = await body(request)
    check_params(data, CONFIRM_PARAMS)
    expand = expand_list(data)
    status = pi.status
    if status not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise UserError(
            400,
            f"This PaymentIntent's status is {status}, but it must be one of "
            "requires_payment_method, requires_confirmation or requires_action to be confirmed.",
            {"code": "payment_intent_unexpected_state"},
        )
    pm = data.get("payment_method") or pi.payment_method
    if not pm:
        raise UserError(
            400,
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "Update the PaymentIntent with a payment method and then confirm it again.",
            {"code": "payment_intent_unexpected_state"},
        )
    ls.PaymentMethod._api_retrieve(pm)
    if "receipt_email" in data:
        pi.receipt_email = data["receipt_email"] or None
    if "setup_future_usage" in data:
        pi.setup_future_usage = data["setup_future_usage"] or None
    pi.payment_method = pm
    pi.latest_charge = None  # a new attempt after a decline
    pi.next_action = None
    pi._confirm(on_failure_now=pi._report_failure)
    return json_response(pi._export(expand=expand or None))


# ---------------------------------------------------------------- setup


_applied = False


def apply() -> None:
    """Class-level changes to localstripe's subscription items (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    ls.SubscriptionItem._export = item_dict  # type: ignore[method-assign,assignment]


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/subscriptions", subscription_create)
    r.add_get("/v1/subscriptions/{id}", subscription_retrieve)
    r.add_post("/v1/subscriptions/{id}", subscription_update)
    r.add_delete("/v1/subscriptions/{id}", subscription_cancel)
    r.add_post("/v1/subscription_items", item_create)
    r.add_get("/v1/subscription_items", item_list)
    r.add_get("/v1/subscription_items/{id}", item_retrieve)
    r.add_post("/v1/subscription_items/{id}", item_update)
    r.add_delete("/v1/subscription_items/{id}", item_delete)
    r.add_post("/v1/payment_intents/{id}/confirm", payment_intent_confirm)
