"""The backend-compatible helper and one StripeClient per shop."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import stripe

from opskit import stripe_client
from opskit.common import exceptions
from opskit.common.models import Account, Shop
from opskit.common.stripe_errors import describe_error, is_stripe_failure
from opskit.stripeapi.clients import (
    StripeCustomerMissing,
    StripeNotConfigured,
    client_for_shop,
    configure_for_shop,
    fetch_customer,
    get_customer_id,
    shop_mode,
)

KEY = "sk_test_" + "A1b2C3d4E5f6G7h8J9k0Lmno"


@pytest.fixture
def key(fresh_key: Any) -> str:
    """A new sk_test_ key: its own isolated store in the session sandbox."""
    return str(fresh_key() if callable(fresh_key) else fresh_key)


@pytest.fixture(autouse=True)
def _no_global_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no global key and restores whatever was there."""
    monkeypatch.setattr(stripe, "api_key", None)
    yield
    stripe_client.clear_clients()


def _new_key() -> str:
    return f"sk_test_{uuid.uuid4().hex}"


def _sqlalchemy_row(key: str) -> Any:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT 7 AS id, 'Row shop' AS name, :k AS stripe_secret_key"), {"k": key}
        ).one()
    engine.dispose()
    return row


def test_reexports_the_backend_exceptions() -> None:
    assert stripe_client.StripeNotConfigured is exceptions.StripeNotConfigured
    assert stripe_client.StripeCustomerMissing is exceptions.StripeCustomerMissing


@pytest.mark.parametrize(
    "shop",
    [
        Shop(id=7, name="Shop", stripe_secret_key=KEY),
        {"id": 7, "name": "Mapping", "stripe_secret_key": KEY},
        pd.Series({"id": 7, "name": "Pandas row", "stripe_secret_key": KEY}),
        SimpleNamespace(id=7, name="ORM object", stripe_secret_key=KEY),
        "sqlalchemy-row",
    ],
    ids=["Shop", "mapping", "pandas", "orm", "sqlalchemy"],
)
def test_configure_for_shop_sets_the_global_key_from_any_row(shop: Any) -> None:
    if isinstance(shop, str):
        shop = _sqlalchemy_row(KEY)
    configure_for_shop(shop)
    assert stripe.api_key == KEY


def test_configure_for_shop_strips_whitespace() -> None:
    configure_for_shop({"id": 1, "stripe_secret_key": f"  {KEY}\n"})
    assert stripe.api_key == KEY


def test_restricted_keys_are_usable() -> None:
    rk = "rk_live_" + "Z9y8X7w6V5u4T3s2R1q0Ponm"
    configure_for_shop({"id": 1, "stripe_secret_key": rk})
    assert stripe.api_key == rk
    assert shop_mode({"id": 1, "stripe_secret_key": rk}) == "live"


@pytest.mark.parametrize(
    ("shop", "expected"),
    [
        (None, "shop is None"),
        (
            {"id": 3, "name": "No key", "stripe_secret_key": None},
            r"shop 3 \(No key\).*no secret key",
        ),
        ({"id": 4, "stripe_secret_key": "   "}, "shop 4.*blank"),
        ({"id": 5, "stripe_secret_key": "pk_test_" + "P" * 24}, "shop 5.*publishable pk_"),
        ({"id": 6, "stripe_secret_key": "hunter2-not-a-key"}, "shop 6.*not a Stripe secret key"),
        (pd.Series({"id": 8, "stripe_secret_key": float("nan")}), "shop 8.*no secret key"),
    ],
)
def test_configure_for_shop_refuses_unusable_keys(shop: Any, expected: str) -> None:
    with pytest.raises(StripeNotConfigured, match=expected) as info:
        configure_for_shop(shop)
    assert stripe.api_key is None
    assert "P" * 12 not in str(info.value) and "hunter2" not in str(info.value)


def test_shop_mode() -> None:
    assert shop_mode({"id": 1, "stripe_secret_key": KEY}) == "test"
    assert shop_mode({"id": 1, "stripe_secret_key": "sk_live_" + "x" * 24}) == "live"
    assert shop_mode({"id": 1, "stripe_secret_key": None}) == "none"
    assert shop_mode({"id": 1, "stripe_secret_key": "pk_live_" + "x" * 24}) == "invalid"
    assert shop_mode(None) == "none"


def test_get_customer_id() -> None:
    assert get_customer_id({"id": 1, "details": '{"stripe_customer_id": "cus_1"}'}) == "cus_1"
    acc = Account(id=2, shop_id=1, details={"stripe_customer_id": "cus_2", "other": 1})
    assert get_customer_id(acc) == "cus_2"
    row = pd.Series({"id": 3, "shop_id": 1, "details": {"stripe_customer_id": "cus_3"}})
    assert get_customer_id(row) == "cus_3"
    # like the backend: a null or empty id raises too (see tests/test_backend_helper.py)
    with pytest.raises(StripeCustomerMissing):
        get_customer_id({"id": 4, "details": {"stripe_customer_id": None}})


@pytest.mark.parametrize("details", ['{"plan": "gold"}', "{}", None, "not json", "[1]"])
def test_get_customer_id_missing_names_the_account(details: Any) -> None:
    with pytest.raises(StripeCustomerMissing, match="Account 42 .*stripe_customer_id"):
        get_customer_id({"id": 42, "shop_id": 1, "details": details})


def test_fetch_customer_returns_a_plain_dict(sandbox: Any, key: str) -> None:
    shop = {"id": 1, "name": "A", "stripe_secret_key": key}
    created = client_for_shop(shop, api_base=sandbox.url).v1.customers.create(
        params={"email": "x@example.com", "metadata": {"account_id": "9"}}
    )
    got = fetch_customer(shop, created.id, api_base=sandbox.url)
    assert type(got) is dict and type(got["metadata"]) is dict
    assert got["id"] == created.id and got["email"] == "x@example.com"
    assert got["metadata"] == {"account_id": "9"}
    assert stripe.api_key == key  # configure + retrieve, as the backend's helper


def test_fetch_customer_uses_the_api_base_from_the_environment(
    sandbox: Any, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = {"id": 1, "stripe_secret_key": key}
    created = client_for_shop(shop, api_base=sandbox.url).v1.customers.create()
    monkeypatch.setenv("OPSKIT_STRIPE_API_BASE", sandbox.url)
    assert fetch_customer(shop, created.id)["id"] == created.id


def test_fetch_customer_does_not_translate_stripe_errors(sandbox: Any, key: str) -> None:
    shop = {"id": 1, "stripe_secret_key": key}
    with pytest.raises(stripe.InvalidRequestError) as info:
        fetch_customer(shop, "cus_missing", api_base=sandbox.url)
    assert info.value.http_status == 404
    with pytest.raises(StripeNotConfigured):
        fetch_customer({"id": 2, "stripe_secret_key": None}, "cus_1", api_base=sandbox.url)


def test_client_for_shop_is_cached_per_key_and_base() -> None:
    shop = {"id": 1, "stripe_secret_key": KEY}
    a = client_for_shop(shop, api_base="http://127.0.0.1:9")
    assert client_for_shop(Shop(2, "same key", KEY), api_base="http://127.0.0.1:9/") is a
    assert client_for_shop(shop) is not a
    assert client_for_shop({"id": 3, "stripe_secret_key": _new_key()}) is not a
    assert stripe.api_key is None


def test_client_for_shop_refuses_unusable_keys() -> None:
    with pytest.raises(StripeNotConfigured, match="publishable"):
        client_for_shop({"id": 1, "stripe_secret_key": "pk_test_" + "x" * 24})
    with pytest.raises(StripeNotConfigured, match="shop is None"):
        client_for_shop(None)


def test_threads_over_shops_never_cross_keys(sandbox: Any) -> None:
    """8 threads, 6 shops: every request for shop X's customers carries shop X's key."""
    shops = [Shop(id=i, name=f"shop {i}", stripe_secret_key=_new_key()) for i in range(6)]
    owner: dict[str, int] = {}  # customer id -> shop id
    lock = threading.Lock()
    sentinel = "never-set-by-client-for-shop"
    stripe.api_key = sentinel

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(8):
            shop = rng.choice(shops)
            assert shop.id is not None
            client = client_for_shop(shop, api_base=sandbox.url)
            with lock:
                mine = [c for c, s in owner.items() if s == shop.id]
            if mine and rng.random() < 0.5:
                got = client.v1.customers.retrieve(rng.choice(mine))
                assert got.to_dict()["metadata"]["shop_id"] == str(shop.id)
            else:
                c = client.v1.customers.create(params={"metadata": {"shop_id": str(shop.id)}})
                with lock:
                    owner[c.id] = shop.id

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))

    assert stripe.api_key == sentinel
    assert len(owner) >= 6
    key_of = {s.id: s.stripe_secret_key for s in shops}
    checked = 0
    for record in sandbox.requests():
        for cid, sid in owner.items():
            if record.path.startswith("/v1/customers/" + cid):
                assert record.key == key_of[sid], "a request used another shop's key"
                checked += 1
    for shop in shops:  # every create went to its own shop's store
        mine = {c for c, s in owner.items() if s == shop.id}
        listed = client_for_shop(shop, api_base=sandbox.url).v1.customers.list(
            params={"limit": 100}
        )
        assert {c.id for c in listed.data} == mine
    assert checked > 0


def test_explicit_settings_apply_to_the_cached_client() -> None:
    shop = {"id": 1, "stripe_secret_key": _new_key()}
    client = client_for_shop(shop, rate_limit=7, max_retry_wait=5)
    transport = stripe_client.transport_of(client)
    assert transport is not None and transport.limiter is not None
    assert (transport.limiter.rate, transport.policy.max_retry_wait) == (7, 5)
    assert client_for_shop(shop) is client  # defaults do not reset explicit settings
    assert transport.limiter.rate == 7
    assert client_for_shop(shop, rate_limit=3, max_retry_wait=2) is client
    assert (transport.limiter.rate, transport.policy.max_retry_wait) == (3, 2)
    live = client_for_shop({"id": 2, "stripe_secret_key": "sk_live_" + uuid.uuid4().hex})
    live_transport = stripe_client.transport_of(live)
    assert live_transport is not None and live_transport.limiter is not None
    assert live_transport.limiter.rate == 90  # Settings.live_rate_limit
    assert live_transport.policy.max_retry_wait == 60  # Settings.max_retry_wait


def test_describe_error_is_one_secret_free_line(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSKIT_ALLOW_LIVE_KEYS_ELSEWHERE", "1")  # a live key to the sandbox
    live_key = "sk_live_" + uuid.uuid4().hex
    with pytest.raises(stripe.AuthenticationError) as info:
        fetch_customer({"id": 2, "stripe_secret_key": live_key}, "cus_1", api_base=sandbox.url)
    text = describe_error(info.value)
    assert text.startswith("AuthenticationError (401): Invalid API Key provided: sk_live_")
    assert text.endswith(f"[request {info.value.request_id}]") and "\n" not in text
    assert live_key not in text
    # opskit redacts whatever the message says, even a raw key
    raw = stripe.AuthenticationError(f"Invalid API Key provided: {live_key}", http_status=401)
    assert describe_error(raw) == (
        f"AuthenticationError (401): Invalid API Key provided: sk_live_…{live_key[-4:]}"
    )
    masked = f"sk_live_…{live_key[-4:]}"
    assert describe_error(ValueError(f"boom {live_key}")) == f"ValueError: boom {masked}"
    assert is_stripe_failure(info.value) and not is_stripe_failure(ValueError("x"))
