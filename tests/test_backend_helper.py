"""``opskit.stripe_client`` side by side with shop-backend's own helper, on the same inputs.

``Reference`` below is written from the behaviour BACKEND.md documents for
``server/services/stripe_client.py`` (not copied from it): configure_for_shop
sets ``stripe.api_key`` from the shop and returns the ``stripe`` module, raising
StripeNotConfigured when the shop is None or its key is empty; get_customer_id
raises StripeCustomerMissing when details are missing, not an object, or hold no
truthy ``stripe_customer_id``; fetch_customer configures and retrieves, as a dict,
and lets Stripe's errors through. Each case runs through both and must give the
same return value, or the same kind of exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import stripe

from opskit import stripe_client
from tests.fixtures_sandbox import make_key


class RefNotConfigured(Exception):
    pass


class RefCustomerMissing(Exception):
    pass


class Reference:
    """The backend helper's documented behaviour, for comparison."""

    @staticmethod
    def configure_for_shop(shop: Any) -> Any:
        key = getattr(shop, "stripe_secret_key", None) if shop is not None else None
        if not key:
            raise RefNotConfigured(str(getattr(shop, "id", None)))
        stripe.api_key = key
        return stripe

    @staticmethod
    def get_customer_id(account: Any) -> Any:
        details = getattr(account, "details", None)
        if details is None:
            details = {}
        value = details.get("stripe_customer_id") if isinstance(details, dict) else None
        if not value:
            raise RefCustomerMissing(str(getattr(account, "id", None)))
        return value

    @staticmethod
    def fetch_customer(shop: Any, customer_id: str) -> dict[str, Any]:
        Reference.configure_for_shop(shop)
        return stripe.Customer.retrieve(customer_id).to_dict()


@dataclass
class ShopRow:  # an ORM row of shops, as the backend passes it
    id: Any
    name: str
    stripe_secret_key: str | None


@dataclass
class AccountRow:  # an ORM row of accounts: details as the JSON column gives it
    id: Any
    shop_id: Any
    name: str | None
    details: Any


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    """("ok", value) or ("raises", which of the two documented errors)."""
    try:
        return "ok", fn(*args)
    except (RefNotConfigured, stripe_client.StripeNotConfigured):
        return "raises", "StripeNotConfigured"
    except (RefCustomerMissing, stripe_client.StripeCustomerMissing):
        return "raises", "StripeCustomerMissing"


KEY = "sk_test_" + "Backend0Helper1Case2Xyz9"
UUID = "5f0c2d1e-8a7b-4c6d-9e0f-112233445566"


@pytest.mark.parametrize(
    "shop",
    [
        None,
        ShopRow(UUID, "No key", None),
        ShopRow(UUID, "Empty key", ""),
        ShopRow(UUID, "Good", KEY),
        ShopRow(7, "Integer id", KEY),
    ],
    ids=["none", "null-key", "empty-key", "good", "int-id"],
)
def test_configure_for_shop_side_by_side(shop: Any) -> None:
    theirs = outcome(Reference.configure_for_shop, shop)
    their_key = stripe.api_key
    stripe.api_key = None
    ours = outcome(stripe_client.configure_for_shop, shop)
    assert ours == theirs
    assert stripe.api_key == their_key
    if ours[0] == "ok":
        assert ours[1] is stripe  # the module itself, as the backend returns


@pytest.mark.parametrize(
    "details",
    [
        None,  # SQL NULL or JSON null: both come back as None from a JSON column
        {},
        {"other": 1},
        {"stripe_customer_id": None},
        {"stripe_customer_id": ""},
        {"stripe_customer_id": "cus_123", "stripe_synced_at": "2026-01-01T00:00:00+00:00"},
        {"stripe_customer_id": "cus_456", "stripe_customer": {"id": "cus_456"}},
        [1, 2],  # a JSON array: not an object
        "not json",  # a JSON string value
        42,
    ],
    ids=["null", "empty", "other-keys", "id-null", "id-empty", "id", "snapshot", "list", "str",
         "number"],
)  # fmt: skip
def test_get_customer_id_side_by_side(details: Any) -> None:
    account = AccountRow(UUID, UUID, "ann@example.com", details)
    assert outcome(stripe_client.get_customer_id, account) == outcome(
        Reference.get_customer_id, account
    )


def test_fetch_customer_side_by_side(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key("helper")
    monkeypatch.setattr(stripe, "api_base", sandbox.url)  # the backend's global client
    monkeypatch.setattr(stripe, "api_key", None)
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    created = client.v1.customers.create(params={"email": "ann@example.com"})
    shop = ShopRow(UUID, "Good", key)
    theirs = Reference.fetch_customer(shop, created.id)
    stripe.api_key = None
    ours = stripe_client.fetch_customer(shop, created.id)
    assert type(ours) is dict and ours == theirs
    assert stripe.api_key == key  # configured for the shop, as the backend's
    for fn in (Reference.fetch_customer, stripe_client.fetch_customer):
        with pytest.raises(stripe.InvalidRequestError):  # Stripe's errors are not translated
            fn(shop, "cus_missing")
    for fn in (Reference.fetch_customer, stripe_client.fetch_customer):
        assert outcome(fn, ShopRow(UUID, "No key", None), created.id) == (
            "raises",
            "StripeNotConfigured",
        )
