"""What opskit does on the answers Stripe really gives, now that the sandbox gives them too.

Each test is a case the old sandbox could not produce (issue 13): a subscription of a
customer on a test clock (left out of Stripe's lists), a decline carrying its payment
intent, a 500 Stripe saved and replays, subscriptions whose period lives only on
their items.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import stripe

from opskit.backend.db import create_reference_tables
from opskit.ops import Ops, open_ops
from opskit.sandbox import Sandbox
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

CARD = {"exp_month": 12, "exp_year": 2034, "cvc": "123"}


@dataclass
class World:
    ops: Ops
    c: stripe.StripeClient
    key: str
    sandbox: Sandbox
    price: str

    def pm(self, number: str = "4242424242424242") -> Any:
        return self.c.v1.payment_methods.create(
            params={"type": "card", "card": {"number": number, **CARD}}
        )

    def paying(self, **params: Any) -> Any:
        pm = self.pm()
        return self.c.v1.customers.create(
            params={
                "payment_method": pm.id,
                "invoice_settings": {"default_payment_method": pm.id},
                **params,
            }
        )


def _world(url: str, sandbox: Sandbox, accounts: list[dict[str, Any]], key: str) -> Ops:
    insert(url, shops=[{"id": 1, "name": "One", "stripe_secret_key": key}], accounts=accounts)
    return open_ops(url, stripe_api_base=sandbox.url)


@pytest.fixture
def setup(tmp_path: Path, sandbox: Sandbox) -> Iterator[tuple[str, str, stripe.StripeClient, str]]:
    url = f"sqlite:///{tmp_path / 'backend.sqlite'}"
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    key = make_key("fid")
    c = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    prod = c.v1.products.create(params={"name": "Plan"})
    price = c.v1.prices.create(
        params={
            "unit_amount": 900,
            "currency": "eur",
            "recurring": {"interval": "month"},
            "product": prod.id,
        }
    )
    yield url, key, c, price.id


def test_a_recorded_subscription_on_a_test_clock_is_found(
    setup: tuple[str, str, stripe.StripeClient, str], sandbox: Sandbox
) -> None:
    """Stripe lists no test-clock objects unless asked; opskit retrieves recorded ids."""
    url, key, c, price = setup
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": 1_800_000_000})
    pm = c.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", **CARD}}
    )
    cus = c.v1.customers.create(
        params={
            "email": "clock@x.io",
            "test_clock": clock.id,
            "payment_method": pm.id,
            "invoice_settings": {"default_payment_method": pm.id},
        }
    )
    sub = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price}]})
    assert c.v1.subscriptions.list(params={"status": "all"}).data == []  # as at Stripe
    details = {
        "stripe_customer_id": cus.id,
        "stripe_subscription_id": sub.id,
        "subscription_status": "active",
        "stripe_price_id": price,
    }
    ops = _world(
        url, sandbox, [{"id": 10, "shop_id": 1, "email": "clock@x.io", "details": details}], key
    )
    customers = ops.reconcile_customers(progress=False)
    assert customers.loc[customers["account_id"] == "10", "status"].tolist() == ["match"]
    subs = ops.reconcile_subscriptions(progress=False)
    row = subs[subs["stripe_subscription_id"] == sub.id]
    assert row["status"].tolist() == ["match"], row[["status", "detail"]].to_dict("records")


def test_a_decline_is_audited_with_the_payment_intent_it_left(
    setup: tuple[str, str, stripe.StripeClient, str], sandbox: Sandbox
) -> None:
    url, key, c, _ = setup
    cus = c.v1.customers.create(params={"email": "pay@x.io"})
    ops = _world(
        url,
        sandbox,
        [{"id": 10, "shop_id": 1, "email": "pay@x.io", "details": {"stripe_customer_id": cus.id}}],
        key,
    )
    pm = c.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4000000000000002", **CARD}}
    )
    with pytest.raises(stripe.CardError) as e:
        ops.create_payment_intent(10, 1250, "eur", payment_method=pm.id, confirm_payment=True)
    err = e.value.error
    assert err is not None and err.payment_intent is not None
    left = c.v1.payment_intents.retrieve(err.payment_intent.id)
    assert left.status == "requires_payment_method" and left.amount == 1250
    [row] = ops.audit_log().to_dict("records")
    assert row["outcome"] == "error" and row["result"] == left.id
    assert row["stripe_request_id"] == e.value.request_id


def test_a_saved_500_is_found_out_not_retried_blindly(
    setup: tuple[str, str, stripe.StripeClient, str], sandbox: Sandbox
) -> None:
    """Stripe saves a 500 that happened after the write and says Stripe-Should-Retry: false.
    opskit sends the write once, then finds out what Stripe did (the write recovery of
    issue 17) instead of retrying under the same key, which would replay the 500."""
    url, key, c, _ = setup
    ops = _world(url, sandbox, [{"id": 10, "shop_id": 1, "email": "new@x.io", "details": {}}], key)
    sandbox.inject_write_fault(key, "error_after")
    made = ops.create_customer(10)
    posts = [r for r in sandbox.requests(key) if r.method == "POST" and r.path == "/v1/customers"]
    assert [p.status for p in posts] == [500]  # one attempt: no blind retry of a saved 500
    assert [x.id for x in c.v1.customers.list().data] == [made["id"]]  # nothing created twice
    audit = ops.audit_log()
    row = audit[audit["action"] == "customer.create"].iloc[0]
    assert row["outcome"] == "ok" and row["result"] == made["id"]


def test_periods_are_read_from_items(
    setup: tuple[str, str, stripe.StripeClient, str], sandbox: Sandbox
) -> None:
    """At 2026-10-28 a subscription has no top-level period: opskit reads its items'."""
    url, key, c, price = setup
    prod = c.v1.products.create(params={"name": "Addon"})
    addon = c.v1.prices.create(
        params={
            "unit_amount": 100,
            "currency": "eur",
            "recurring": {"interval": "month"},
            "product": prod.id,
        }
    )
    pm = c.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", **CARD}}
    )
    cus = c.v1.customers.create(
        params={"payment_method": pm.id, "invoice_settings": {"default_payment_method": pm.id}}
    )
    sub = c.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": price}, {"price": addon.id}]}
    )
    raw = sub.to_dict()
    assert "current_period_end" not in raw
    end = raw["items"]["data"][0]["current_period_end"]
    ops = _world(url, sandbox, [], key)
    subs = ops.subscriptions(progress=False)
    row = subs[subs["stripe_subscription_id"] == sub.id]
    assert row["current_period_end_at"].tolist() == [pd.Timestamp(end, unit="s", tz="UTC")]
