"""Multi-item subscriptions, lookup keys, default_incomplete and confirm, as Stripe serves them.

Everything goes through stripe-python 16's real client against the session sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stripe

from opskit.sandbox import Sandbox

Client = Callable[[str], stripe.StripeClient]
CARD = {"exp_month": 12, "exp_year": 2034, "cvc": "123"}


def _pm(c: stripe.StripeClient, number: str = "4242424242424242") -> Any:
    return c.v1.payment_methods.create(params={"type": "card", "card": {"number": number, **CARD}})


def _prices(c: stripe.StripeClient, *amounts: int, currency: str = "eur") -> list[Any]:
    prod = c.v1.products.create(params={"name": "Plan"})
    return [
        c.v1.prices.create(
            params={
                "unit_amount": a,
                "currency": currency,
                "recurring": {"interval": "month"},
                "product": prod.id,
                "lookup_key": f"monthly-{prod.id}-{i}",
            }
        )
        for i, a in enumerate(amounts)
    ]


def _paying_customer(c: stripe.StripeClient) -> Any:
    pm = _pm(c)
    return c.v1.customers.create(
        params={"payment_method": pm.id, "invoice_settings": {"default_payment_method": pm.id}}
    )


def _counts(c: stripe.StripeClient) -> tuple[int, int, int]:
    return (
        len(c.v1.subscriptions.list(params={"status": "all", "limit": 100}).data),
        len(c.v1.invoices.list(params={"limit": 100}).data),
        len(c.v1.payment_intents.list(params={"limit": 100}).data),
    )


def test_two_items_one_invoice_item_level_periods(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    base, addon = _prices(c, 1000, 250)
    cus = _paying_customer(c)
    sub = c.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": base.id}, {"price": addon.id, "quantity": 2}],
            "expand": ["latest_invoice"],
        }
    )
    d = sub.to_dict()
    assert d["status"] == "active"
    assert [i["price"]["id"] for i in d["items"]["data"]] == [base.id, addon.id]
    assert [i["quantity"] for i in d["items"]["data"]] == [1, 2]
    # At 2026-10-28 the period lives on each item; plan/quantity/period are gone from the top.
    for gone in ("current_period_start", "current_period_end", "plan", "quantity"):
        assert gone not in d
    for item in d["items"]["data"]:
        assert item["subscription"] == sub.id
        assert item["current_period_end"] > item["current_period_start"] >= d["start_date"]
    # One invoice bills every item: 1000 + 2 x 250.
    assert d["latest_invoice"]["total"] == 1500
    assert d["latest_invoice"]["status"] == "paid"
    assert len(c.v1.invoices.list(params={"customer": cus.id}).data) == 1


def test_add_change_and_remove_items(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    base, addon, extra = _prices(c, 1000, 250, 99)
    cus = _paying_customer(c)
    sub = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": base.id}]})
    sub = c.v1.subscriptions.update(sub.id, params={"items": [{"price": addon.id}]})
    assert [i.price.id for i in sub["items"].data] == [base.id, addon.id]
    first = sub["items"].data[0]
    sub = c.v1.subscriptions.update(
        sub.id, params={"items": [{"id": first.id, "deleted": True}, {"price": extra.id}]}
    )
    assert [i.price.id for i in sub["items"].data] == [addon.id, extra.id]
    sub = c.v1.subscriptions.update(
        sub.id, params={"items": [{"id": sub["items"].data[0].id, "quantity": 3}]}
    )
    assert sub["items"].data[0].quantity == 3
    with pytest.raises(stripe.InvalidRequestError, match="at least one"):
        c.v1.subscriptions.update(
            sub.id, params={"items": [{"id": i.id, "deleted": True} for i in sub["items"].data]}
        )
    with pytest.raises(stripe.InvalidRequestError, match="same price"):
        c.v1.subscriptions.update(sub.id, params={"items": [{"price": addon.id}]})
    # The subscription_items endpoints do the same.
    si = c.v1.subscription_items.create(params={"subscription": sub.id, "price": base.id})
    assert si.subscription == sub.id and si.current_period_end > si.current_period_start
    listed = c.v1.subscription_items.list(params={"subscription": sub.id}).data
    assert [i.id for i in listed][-1] == si.id and len(listed) == 3
    gone = c.v1.subscription_items.delete(si.id)
    assert gone.deleted is True
    assert len(c.v1.subscriptions.retrieve(sub.id)["items"].data) == 2
    with pytest.raises(stripe.InvalidRequestError, match="No such subscription item"):
        c.v1.subscription_items.retrieve(si.id)


def test_items_must_share_currency(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    [eur] = _prices(c, 1000)
    [usd] = _prices(c, 1000, currency="usd")
    cus = _paying_customer(c)
    before = _counts(c)
    with pytest.raises(stripe.InvalidRequestError, match="currency"):
        c.v1.subscriptions.create(
            params={"customer": cus.id, "items": [{"price": eur.id}, {"price": usd.id}]}
        )
    assert _counts(c) == before


def test_prices_by_lookup_keys(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    a, b, other = _prices(c, 1000, 2000, 3000)
    got = c.v1.prices.list(params={"lookup_keys": [a.lookup_key, b.lookup_key]}).data
    assert {p.id for p in got} == {a.id, b.id}
    assert {p.lookup_key for p in got} == {a.lookup_key, b.lookup_key}
    assert all(p.product == a.product for p in got)
    # Lookup keys are unique in an account; transfer_lookup_key moves one.
    with pytest.raises(stripe.InvalidRequestError, match="already uses that lookup key"):
        c.v1.prices.create(
            params={
                "unit_amount": 5,
                "currency": "eur",
                "product": a.product,
                "lookup_key": a.lookup_key,
            }
        )
    moved = c.v1.prices.create(
        params={
            "unit_amount": 5,
            "currency": "eur",
            "product": a.product,
            "lookup_key": a.lookup_key,
            "transfer_lookup_key": True,
        }
    )
    assert [p.id for p in c.v1.prices.list(params={"lookup_keys": [a.lookup_key]}).data] == [
        moved.id
    ]
    assert c.v1.prices.retrieve(a.id).lookup_key is None


def test_default_incomplete_until_first_invoice_is_paid(
    stripe_client: Client, fresh_key: str
) -> None:
    c = stripe_client(fresh_key)
    base, addon = _prices(c, 1000, 250)
    cus = c.v1.customers.create(params={"email": "new@example.com"})  # no payment method
    sub = c.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": base.id}, {"price": addon.id}],
            "payment_behavior": "default_incomplete",
            "expand": ["latest_invoice.payments", "latest_invoice.confirmation_secret"],
        }
    )
    assert sub.status == "incomplete"
    inv = sub.latest_invoice
    assert inv.status == "open" and inv.total == 1250
    pi_id = inv.payments.data[0].payment.payment_intent
    assert inv.confirmation_secret.client_secret.startswith(pi_id + "_secret_")
    pi = c.v1.payment_intents.retrieve(pi_id)
    assert pi.status == "requires_payment_method" and pi.amount == 1250
    assert c.v1.subscriptions.retrieve(sub.id).status == "incomplete"

    done = c.v1.payment_intents.confirm(pi_id, params={"payment_method": _pm(c).id})
    assert done.status == "succeeded"
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    assert c.v1.invoices.retrieve(inv.id).status == "paid"


def test_default_incomplete_declined_then_paid(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    [base] = _prices(c, 1000)
    cus = c.v1.customers.create(params={"email": "d@example.com"})
    sub = c.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": base.id}],
            "payment_behavior": "default_incomplete",
            "expand": ["latest_invoice.payments"],
        }
    )
    pi_id = sub.latest_invoice.payments.data[0].payment.payment_intent
    with pytest.raises(stripe.CardError) as e:
        c.v1.payment_intents.confirm(
            pi_id, params={"payment_method": _pm(c, "4000000000000341").id}
        )
    assert e.value.code == "card_declined"
    assert c.v1.subscriptions.retrieve(sub.id).status == "incomplete"
    assert c.v1.payment_intents.retrieve(pi_id).status == "requires_payment_method"
    c.v1.payment_intents.confirm(pi_id, params={"payment_method": _pm(c).id})
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"


def test_older_api_version_expands_invoice_payment_intent(sandbox: Sandbox, fresh_key: str) -> None:
    """Clients pinned before 2025-03-31 (the backend's module, say) keep the old shapes."""
    new = stripe.StripeClient(fresh_key, base_addresses={"api": sandbox.url})
    old = stripe.StripeClient(
        fresh_key, base_addresses={"api": sandbox.url}, stripe_version="2024-06-20"
    )
    [base] = _prices(new, 1000)
    cus = new.v1.customers.create(params={"email": "o@example.com"})
    params: Any = {
        "customer": cus.id,
        "items": [{"price": base.id}],
        "payment_behavior": "default_incomplete",
        "expand": ["latest_invoice.payment_intent"],
    }
    sub = old.v1.subscriptions.create(params=params)
    assert sub.status == "incomplete"
    assert sub.latest_invoice.payment_intent.status == "requires_payment_method"
    assert sub.to_dict()["current_period_end"] == sub["items"].data[0].current_period_end
    before = _counts(new)
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        new.v1.subscriptions.create(params=params)
    assert _counts(new) == before
    with pytest.raises(stripe.InvalidRequestError, match="Invalid Stripe API version"):
        stripe.StripeClient(
            fresh_key, base_addresses={"api": sandbox.url}, stripe_version="2099-13-01"
        ).v1.customers.list()


def test_refused_creates_leave_nothing_behind(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    [base] = _prices(c, 1000)
    bare = c.v1.customers.create(params={"email": "bare@example.com"})
    before = _counts(c)
    # allow_incomplete (the default) needs a payment method.
    with pytest.raises(stripe.InvalidRequestError, match="no attached payment source"):
        c.v1.subscriptions.create(params={"customer": bare.id, "items": [{"price": base.id}]})
    # error_if_incomplete with a card that declines: 402, nothing created.
    pm = _pm(c, "4000000000000341")
    c.v1.payment_methods.attach(pm.id, params={"customer": bare.id})
    with pytest.raises(stripe.CardError):
        c.v1.subscriptions.create(
            params={
                "customer": bare.id,
                "items": [{"price": base.id}],
                "default_payment_method": pm.id,
                "payment_behavior": "error_if_incomplete",
            }
        )
    with pytest.raises(stripe.InvalidRequestError, match="No such price"):
        c.v1.subscriptions.create(
            params={"customer": bare.id, "items": [{"price": base.id}, {"price": "price_nope"}]}
        )
    assert _counts(c) == before
    # allow_incomplete with a declining card: the subscription exists, incomplete.
    sub = c.v1.subscriptions.create(
        params={"customer": bare.id, "items": [{"price": base.id}], "default_payment_method": pm.id}
    )
    assert sub.status == "incomplete"


def test_removed_parameters_are_refused(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    [base] = _prices(c, 1000)
    cus = _paying_customer(c)
    for removed in ({"plan": base.id}, {"coupon": "FREE"}, {"tax_percent": 5}):
        with pytest.raises(stripe.InvalidRequestError, match="Received unknown parameter") as e:
            c.v1.subscriptions.create(
                params={"customer": cus.id, "items": [{"price": base.id}], **removed}  # type: ignore[typeddict-item]
            )
        assert e.value.param == next(iter(removed))


def test_deleting_a_customer_cancels_its_subscriptions(
    stripe_client: Client, fresh_key: str
) -> None:
    c = stripe_client(fresh_key)
    [base] = _prices(c, 1000)
    cus = _paying_customer(c)
    keep = _paying_customer(c)
    a = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": base.id}]})
    b = c.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": base.id}], "trial_period_days": 7}
    )
    other = c.v1.subscriptions.create(params={"customer": keep.id, "items": [{"price": base.id}]})
    c.v1.customers.delete(cus.id)
    for sid in (a.id, b.id):
        s = c.v1.subscriptions.retrieve(sid)
        assert s.status == "canceled" and s.ended_at is not None
    assert c.v1.subscriptions.retrieve(other.id).status == "active"


def test_seeded_multi_item_subscription(
    sandbox: Sandbox, stripe_client: Client, fresh_key: str
) -> None:
    [cus] = sandbox.seed(fresh_key, "customers", [{"email": "s@example.com"}])
    a, b = sandbox.seed(
        fresh_key,
        "prices",
        [
            {"unit_amount": 900, "currency": "eur", "recurring": {"interval": "month"}},
            {"unit_amount": 100, "currency": "eur", "recurring": {"interval": "month"}},
        ],
    )
    sandbox.seed(
        fresh_key,
        "subscriptions",
        [
            {
                "customer": cus,
                "items": [{"price": a}, {"price": b, "quantity": 3}],
                "status": "past_due",
                "created": 1_700_000_000,
            }
        ],
    )
    [sub] = stripe_client(fresh_key).v1.subscriptions.list(params={"customer": cus}).data
    assert sub.status == "past_due" and sub.start_date == 1_700_000_000
    assert [(i.price.id, i.quantity) for i in sub["items"].data] == [(a, 1), (b, 3)]
    assert sub["items"].data[0].current_period_start == 1_700_000_000


def test_test_clocks_hide_their_objects_and_move_time(
    stripe_client: Client, fresh_key: str
) -> None:
    c = stripe_client(fresh_key)
    [base] = _prices(c, 1000)
    t0 = 1_800_000_000
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": t0, "name": "c"})
    pm = _pm(c)
    cus = c.v1.customers.create(
        params={
            "test_clock": clock.id,
            "payment_method": pm.id,
            "invoice_settings": {"default_payment_method": pm.id},
        }
    )
    other = c.v1.customers.create(params={"email": "plain@example.com"})
    assert cus.test_clock == clock.id
    assert [x.id for x in c.v1.customers.list().data] == [other.id]
    assert [x.id for x in c.v1.customers.list(params={"test_clock": clock.id}).data] == [cus.id]
    sub = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": base.id}]})
    fresh = c.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": base.id}],
            "payment_behavior": "default_incomplete",
        }
    )
    assert sub.start_date == t0 and sub.test_clock == clock.id
    assert c.v1.subscriptions.list().data == []
    assert len(c.v1.subscriptions.list(params={"test_clock": clock.id}).data) == 2
    end = sub["items"].data[0].current_period_end
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": end + 60})
    renewed = c.v1.subscriptions.retrieve(sub.id)
    assert renewed.status == "active"
    assert renewed["items"].data[0].current_period_start == end
    assert len(c.v1.invoices.list(params={"subscription": sub.id}).data) == 2
    assert c.v1.subscriptions.retrieve(fresh.id).status == "incomplete_expired"
    with pytest.raises(stripe.InvalidRequestError, match="must be after"):
        c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": t0})
    c.v1.test_helpers.test_clocks.delete(clock.id)
    assert c.v1.customers.retrieve(cus.id).deleted is True
    assert c.v1.subscriptions.retrieve(sub.id).status == "canceled"
