"""Bulk inserts that bypass HTTP but build the same localstripe objects.

Objects go through localstripe's own constructors (so they retrieve, list and
export exactly like HTTP-created ones); only ``id`` and ``created`` are
overridden afterwards, and the store is indexed once at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localstripe import resources as ls

from opskit.sandbox import patches
from opskit.sandbox.stores import IndexedStore

KINDS = {
    "customers": "customer",
    "customer": "customer",
    "subscriptions": "subscription",
    "subscription": "subscription",
    "prices": "price",
    "price": "price",
    "plans": "price",
    "plan": "price",
    "products": "product",
    "product": "product",
    "payment_intents": "payment_intent",
    "payment_intent": "payment_intent",
    "payment_methods": "payment_method",
    "payment_method": "payment_method",
}


def _rekey(store: IndexedStore, obj: Any, new_id: str | None, created: Any) -> None:
    if new_id is None and created is None:
        return
    store.forget(obj.object + ":" + obj.id)
    if new_id is not None:
        obj.id = str(new_id)
    if created is not None:
        obj.created = int(created)
    store[obj.object + ":" + obj.id] = obj
    # Children that remember their parent's id.
    if obj.object == "subscription":
        obj.items.url = "/v1/subscription_items?subscription=" + obj.id
        for si in obj.items._list:
            si._subscription = obj.id
    elif obj.object == "customer":
        obj.sources.url = "/v1/customers/" + obj.id + "/sources"
        obj.tax_ids.url = "/v1/customers/" + obj.id + "/tax_ids"


def _customer(o: dict[str, Any]) -> Any:
    return ls.Customer(
        name=o.get("name"),
        description=o.get("description"),
        email=o.get("email"),
        phone=o.get("phone"),
        metadata=dict(o.get("metadata") or {}),
        invoice_settings=dict(o.get("invoice_settings") or {}) or None,
    )


def _product(o: dict[str, Any]) -> Any:
    return ls.Product(
        name=o.get("name") or "Product",
        description=o.get("description"),
        metadata=dict(o.get("metadata") or {}),
        active=o.get("active", True),
    )


def _price(o: dict[str, Any]) -> Any:
    from opskit.sandbox.routes import create_price

    data: dict[str, Any] = {
        k: o[k]
        for k in (
            "unit_amount",
            "currency",
            "recurring",
            "product",
            "nickname",
            "metadata",
            "active",
            "lookup_key",
        )  # fmt: skip
        if k in o
    }
    # "amount"/"interval" accepted too, plan-style.
    if "unit_amount" not in data and "amount" in o:
        data["unit_amount"] = o["amount"]
    if "recurring" not in data and "interval" in o:
        data["recurring"] = {"interval": o["interval"]}
    if "product" not in data:
        data["product_data"] = {"name": o.get("product_name") or o.get("nickname") or "Plan"}
    return create_price(data, price_id=o.get("id"))


def _subscription(o: dict[str, Any]) -> Any:
    from opskit.sandbox import subscriptions

    raw = o.get("items") or [
        {"price": o.get("price") or o.get("plan"), "quantity": o.get("quantity", 1)}
    ]
    lines = []
    for item in raw:
        price = item.get("price") or item.get("plan")
        if isinstance(price, dict):
            price = price.get("id")
        plan = subscriptions.get_price(price, "price")
        lines.append((plan, int(item.get("quantity", 1)), dict(item.get("metadata") or {})))
    start = o.get("start_date", o.get("created"))
    cus = ls.store.get("customer:" + str(o.get("customer")))
    if cus is None:
        raise ValueError(f"seed: no customer {o.get('customer')!r} in this store")
    sub = subscriptions.build(
        str(o.get("customer")),
        lines,
        status=o.get("status", "active"),
        metadata=dict(o.get("metadata") or {}),
        start=int(start) if start is not None else None,
        trial_end=o.get("trial_end"),
        default_payment_method=o.get("default_payment_method"),
        description=o.get("description"),
        test_clock=cus.__dict__.get("test_clock"),
    )
    sub.trial_start = o.get("trial_start", sub.trial_start)
    sub.cancel_at_period_end = bool(o.get("cancel_at_period_end", False))
    sub.cancel_at = o.get("cancel_at")
    if sub.cancel_at_period_end and sub.cancel_at is None:
        sub.cancel_at = sub.current_period_end
    sub.canceled_at = o.get("canceled_at")
    sub.ended_at = o.get("ended_at")
    if o.get("current_period_start") is not None or o.get("current_period_end") is not None:
        for si in sub.items._list:
            si._period_start = int(o.get("current_period_start", si._period_start))
            si._period_end = int(o.get("current_period_end", si._period_end))
    if sub.status in subscriptions.ENDED:
        sub.canceled_at = sub.canceled_at or sub.start_date
        sub.ended_at = sub.ended_at or sub.canceled_at
        if sub.status == "canceled":
            sub._cancellation_details["reason"] = "cancellation_requested"
    return sub


def _payment_intent(o: dict[str, Any]) -> Any:
    pi = ls.PaymentIntent(
        amount=o.get("amount"),
        currency=o.get("currency", "eur"),
        customer=o.get("customer"),
        metadata=dict(o.get("metadata") or {}),
    )
    pi.description = o.get("description")
    pi.receipt_email = o.get("receipt_email")
    pi.automatic_payment_methods = None
    if o.get("status"):
        pi._forced_status = o["status"]
    return pi


def _payment_method(o: dict[str, Any]) -> Any:
    card = dict(o.get("card") or {})
    card.setdefault("number", "4242424242424242")
    card.setdefault("exp_month", 12)
    card.setdefault("exp_year", 2034)
    card.setdefault("cvc", "123")
    pm = ls.PaymentMethod(type="card", card=card, metadata=dict(o.get("metadata") or {}))
    if o.get("customer"):
        ls.PaymentMethod._api_attach(pm.id, customer=o["customer"])
    return pm


BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "customer": _customer,
    "product": _product,
    "price": _price,
    "subscription": _subscription,
    "payment_intent": _payment_intent,
    "payment_method": _payment_method,
}


def seed_into(store: IndexedStore, kind: str, objects: list[dict[str, Any]]) -> list[str]:
    """Build ``objects`` in ``store``; caller holds the store lock (or no server runs)."""
    norm = KINDS.get(kind)
    if norm is None:
        raise ValueError(f"cannot seed {kind!r}; supported: {sorted(set(KINDS))}")
    build = BUILDERS[norm]
    ids: list[str] = []
    with patches.swap_lock:
        old_store = ls.store
        ls.store = store
        patches.seeding = True
        store.begin_bulk()
        try:
            for o in objects:
                obj = build(o)
                _rekey(store, obj, o.get("id") if norm != "price" else None, o.get("created"))
                ids.append(obj.id)
        finally:
            store.end_bulk()
            patches.seeding = False
            ls.store = old_store
    return ids
