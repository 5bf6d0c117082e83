"""The seeded demo: several shops, a few hundred accounts, and drift planted on purpose.

Both halves come from one seed: :func:`build_plan` decides every shop, account and
Stripe object with its role (``match``, ``mismatch_email``, ``deleted``, ...); then
:func:`populate_stripe` creates the Stripe side in a sandbox over HTTP (Stripe
assigns the ids) and :func:`write_database` writes the local side with those ids.
Whenever a fresh sandbox is started the database is rebuilt to match it.
Every status of both reports occurs in the result.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opskit.backend.db import create_reference_tables

SEED = 20261127
_FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Femi",
    "Gia",
    "Hugo",
    "Ines",
    "Jon",
    "Kemi",
    "Lars",
    "Mina",
    "Noor",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Uma",
    "Vik",
    "Wen",
    "Xavi",
    "Yuki",
    "Zoe",
]
_LAST = [
    "Adams",
    "Berg",
    "Costa",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jones",
    "Kim",
    "Lopez",
    "Meyer",
    "Novak",
    "Okafor",
    "Patel",
    "Quist",
    "Rossi",
    "Sato",
    "Tanaka",
]


@dataclass
class DemoShop:
    id: int
    name: str
    secret_key: str | None
    public_key: str | None
    currency: str
    reachable: bool  # False: no key, a misplaced pk_ key, or a key the sandbox rejects


@dataclass
class DemoAccount:
    id: int
    shop_id: int
    email: str
    name: str
    role: str  # the customer-side drift planted on this account
    sub_role: str | None = None  # the subscription-side drift, if it has a subscription
    stripe_email: str | None = None  # what Stripe will hold (differs for mismatches)
    stripe_name: str | None = None
    customer_id: str | None = None  # filled once Stripe has assigned it
    details: dict[str, Any] | str | None = field(default_factory=dict)


@dataclass
class DemoPlan:
    shops: list[DemoShop]
    accounts: list[DemoAccount]
    orphans: dict[int, list[tuple[str, str]]]  # shop id -> (email, name) of unlinked customers
    seed: int


# Roles per reachable shop: (role, count). Everything else is a plain match.
_CUSTOMER_ROLES = [
    ("mismatch_email", 3),
    ("mismatch_name", 2),
    ("no_customer_id", 4),
    ("bad_details", 3),
    ("missing_in_stripe", 2),
    ("deleted_in_stripe", 2),
    ("wrong_shop", 1),
    ("duplicate_link", 2),
    ("mode_mismatch", 1),
]
_SUB_ROLES = [
    ("match", 12),
    ("status_drift", 3),
    ("price_mismatch", 2),
    ("missing_in_stripe", 2),
    ("orphan_in_stripe", 2),
    ("multiple_active", 1),
    ("wrong_customer", 1),
]


def _key(rng: random.Random, prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(rng.choice(alphabet) for _ in range(24))


def build_plan(seed: int = SEED) -> DemoPlan:
    """Decide every shop, account and planted drift from ``seed`` (no I/O)."""
    rng = random.Random(seed)
    shops = [
        DemoShop(1, "Northwind Coffee", _key(rng, "sk_test_"), _key(rng, "pk_test_"), "usd", True),
        DemoShop(2, "Blue Harbor Books", _key(rng, "sk_test_"), _key(rng, "pk_test_"), "eur", True),
        DemoShop(
            3, "Alpine Gear", "  " + _key(rng, "sk_test_") + " ", _key(rng, "pk_test_"), "chf", True
        ),
        DemoShop(4, "Kyoto Tea House", _key(rng, "sk_test_"), _key(rng, "pk_test_"), "jpy", True),
        DemoShop(5, "Pop-up Store", None, None, "usd", False),
        DemoShop(6, "Legacy Outlet", _key(rng, "sk_live_"), _key(rng, "pk_live_"), "gbp", False),
        DemoShop(7, "Corner Kiosk", _key(rng, "pk_test_"), None, "usd", False),
    ]
    sizes = {1: 70, 2: 60, 3: 55, 4: 50, 5: 15, 6: 20, 7: 12}
    accounts: list[DemoAccount] = []
    orphans: dict[int, list[tuple[str, str]]] = {}
    next_id = 1000
    for shop in shops:
        roles: list[str] = []
        if shop.reachable:
            for role, count in _CUSTOMER_ROLES:
                roles += [role] * count
        roles += ["match"] * (sizes[shop.id] - len(roles))
        rng.shuffle(roles)
        shop_accounts = []
        for role in roles:
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            email = f"{first}.{last}{next_id % 97}@example.com".lower()
            acc = DemoAccount(next_id, shop.id, email, f"{first} {last}", role)
            acc.stripe_email, acc.stripe_name = acc.email, acc.name
            if role == "mismatch_email":
                acc.stripe_email = f"{first}.{last}.old@example.net".lower()
            elif role == "mismatch_name":
                acc.stripe_name = f"{first} {rng.choice(_LAST)}-{last}"
            elif role == "match" and rng.random() < 0.3:
                acc.stripe_email = f"  {acc.email.upper()} "  # case/space differences still match
            shop_accounts.append(acc)
            next_id += 1
        if shop.reachable:
            matches = [a for a in shop_accounts if a.role == "match"]
            sub_roles: list[str] = []
            for role, count in _SUB_ROLES:
                sub_roles += [role] * count
            for acc, sub_role in zip(matches, sub_roles, strict=False):
                acc.sub_role = sub_role
            unlinked = [a for a in shop_accounts if a.role == "no_customer_id"]
            orphans[shop.id] = [
                (unlinked[0].email, unlinked[0].name),
                (unlinked[1].email, unlinked[1].name),
            ]
            orphans[shop.id] += [
                (f"walk-in{shop.id}{i}@example.org", f"Walk-in {i}") for i in range(2)
            ]
        accounts += shop_accounts
    return DemoPlan(shops, accounts, orphans, seed)


# -- the Stripe half ----------------------------------------------------------------------


def populate_stripe(plan: DemoPlan, api_base: str) -> None:
    """Create the Stripe side of ``plan`` through stripe-python, filling in the ids.

    Shops are populated concurrently, each through its own client; the local
    sandbox has no rate limit, so the clients' limiter is raised for this setup.
    """
    from concurrent.futures import ThreadPoolExecutor

    from opskit.stripeapi.clients import client_for_shop

    by_shop: dict[int, list[DemoAccount]] = {}
    for acc in plan.accounts:
        by_shop.setdefault(acc.shop_id, []).append(acc)
    reachable = [s for s in plan.shops if s.reachable]

    def populate(shop: DemoShop) -> list[str]:
        client = client_for_shop(_shop_obj(shop), api_base=api_base, rate_limit=_SETUP_RATE)
        return _populate_shop(client, shop, by_shop[shop.id], plan.orphans.get(shop.id, []))

    with ThreadPoolExecutor(max_workers=len(reachable)) as pool:
        made = dict(zip([s.id for s in reachable], pool.map(populate, reachable), strict=True))
    # wrong_shop: link a live customer of the next reachable shop.
    ids = [s.id for s in reachable]
    for acc in plan.accounts:
        if acc.role == "wrong_shop":
            acc.customer_id = made[ids[(ids.index(acc.shop_id) + 1) % len(ids)]][0]
        elif acc.role == "missing_in_stripe":
            acc.customer_id = f"cus_Gone{acc.id}x{plan.seed % 9973}"


_SETUP_RATE = 500.0  # requests/s while populating a local sandbox


def populate_other_mode(plan: DemoPlan, seed_other_mode: Callable[..., list[str]]) -> None:
    """``mode_mismatch``: each such account links a customer that exists only in the other
    mode of its shop's Stripe account (a live-mode customer behind the shop's test key).

    ``seed_other_mode`` is :meth:`opskit.sandbox.Sandbox.seed_other_mode` of the sandbox
    ``populate_stripe`` filled.
    """
    keys = {s.id: (s.secret_key or "").strip() for s in plan.shops if s.reachable}
    for acc in plan.accounts:
        if acc.role == "mode_mismatch" and acc.shop_id in keys:
            (acc.customer_id,) = seed_other_mode(
                keys[acc.shop_id], "customers", [{"email": acc.email, "name": acc.name}]
            )


def _populate_shop(
    client: Any, shop: DemoShop, accounts: list[DemoAccount], orphans: list[tuple[str, str]]
) -> list[str]:
    """Customers, prices and subscriptions of one shop; returns its plainly matching customers."""
    prices = _make_prices(client, shop)
    made: list[str] = []
    for acc in accounts:
        if acc.role in (
            "no_customer_id", "bad_details", "missing_in_stripe", "wrong_shop", "mode_mismatch"
        ):  # fmt: skip
            continue
        if acc.role == "duplicate_link" and _is_second_duplicate(acc, accounts):
            continue
        cus = client.v1.customers.create(
            {"email": acc.stripe_email or "", "name": acc.stripe_name or ""}
        )
        acc.customer_id = cus.id
        if acc.role == "match":
            made.append(cus.id)
        if acc.role == "deleted_in_stripe":
            client.v1.customers.delete(cus.id)
    dups = [a for a in accounts if a.role == "duplicate_link"]
    for a in dups[1:]:
        a.customer_id = dups[0].customer_id
    for email, name in orphans:
        client.v1.customers.create({"email": email, "name": name})
    _make_subscriptions(client, accounts, prices)
    return made


def _is_second_duplicate(acc: DemoAccount, accounts: list[DemoAccount]) -> bool:
    return [a.id for a in accounts if a.role == "duplicate_link"].index(acc.id) > 0


def _make_prices(client: Any, shop: DemoShop) -> dict[str, str]:
    # Zero-decimal currencies (JPY) are priced in whole units.
    amounts = (
        {"basic": 900, "pro": 2900} if shop.currency != "jpy" else {"basic": 1200, "pro": 3800}
    )
    product = client.v1.products.create({"name": f"{shop.name} membership"})
    return {
        tier: client.v1.prices.create(
            {
                "unit_amount": amount,
                "currency": shop.currency,
                "product": product.id,
                "recurring": {"interval": "month"},
                "nickname": tier,
            }
        ).id
        for tier, amount in amounts.items()
    }


def _make_subscriptions(client: Any, accounts: list[DemoAccount], prices: dict[str, str]) -> None:
    for acc in accounts:
        if not acc.sub_role or not acc.customer_id:
            continue
        pm = client.v1.payment_methods.create(
            {
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "cvc": "123",
                },
            }
        )
        client.v1.payment_methods.attach(pm.id, {"customer": acc.customer_id})
        client.v1.customers.update(
            acc.customer_id, {"invoice_settings": {"default_payment_method": pm.id}}
        )
        payer = acc.customer_id
        if acc.sub_role == "wrong_customer":  # a gift: someone else's customer pays
            payer = client.v1.customers.create(
                {"email": f"gift-giver{acc.id}@example.org", "name": "Gift giver"}
            ).id
            card = client.v1.payment_methods.create(
                {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                          "exp_year": 2030, "cvc": "123"}}
            )  # fmt: skip
            client.v1.payment_methods.attach(card.id, {"customer": payer})
            client.v1.customers.update(
                payer, {"invoice_settings": {"default_payment_method": card.id}}
            )
        sub = client.v1.subscriptions.create(
            {"customer": payer, "items": [{"price": prices["basic"]}]}
        )
        details: dict[str, Any] = {
            "stripe_subscription_id": sub.id,
            "subscription_status": sub.status,
            "stripe_price_id": prices["basic"],
        }
        if acc.sub_role == "status_drift":
            client.v1.subscriptions.cancel(sub.id)
            details["subscription_status"] = "active"  # the backend never heard of the cancel
        elif acc.sub_role == "price_mismatch":
            details["stripe_price_id"] = prices["pro"]
        elif acc.sub_role == "missing_in_stripe":
            details["stripe_subscription_id"] = f"sub_Gone{acc.id}"
        elif acc.sub_role == "orphan_in_stripe":
            details = {}
        elif acc.sub_role == "multiple_active":
            client.v1.subscriptions.create(
                {"customer": acc.customer_id, "items": [{"price": prices["pro"]}]}
            )
        acc.details = details if isinstance(acc.details, dict) else {}
        acc.details.update(details)


# -- the database half --------------------------------------------------------------------


def database_rows(plan: DemoPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shop and account rows for the backend tables (details as JSON text)."""
    shops = [
        {
            "id": s.id,
            "name": s.name,
            "stripe_secret_key": s.secret_key,
            "stripe_public_key": s.public_key,
        }
        for s in plan.shops
    ]
    t0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    rng = random.Random(plan.seed + 1)
    accounts = []
    bad = iter(['{"stripe_customer_id": "cus_', "[1, 2, 3]", None] * 10)
    for acc in plan.accounts:
        details: Any = dict(acc.details) if isinstance(acc.details, dict) else {}
        details.setdefault("plan_note", rng.choice(["newsletter", "vip", "wholesale", "retail"]))
        if acc.customer_id:
            details["stripe_customer_id"] = acc.customer_id
        text: str | None = json.dumps(details, sort_keys=True)
        if acc.role == "bad_details":
            text = next(bad)
        created = t0 + timedelta(hours=7 * (acc.id - 1000))
        accounts.append(
            {
                "id": acc.id,
                "shop_id": acc.shop_id,
                "email": acc.email,
                "name": acc.name,
                "details": text,
                "created_at": created,
                "updated_at": created + timedelta(days=3),
            }
        )
    return shops, accounts


def write_database(url: str, plan: DemoPlan) -> None:
    """(Re)create the reference tables at ``url`` and fill them from ``plan``.

    Only in an empty database or one a demo built (:mod:`opskit.demo.marker`);
    raises :class:`~opskit.demo.marker.NotADemoDatabase` before anything is dropped.
    """
    from opskit.demo.marker import check_rebuildable, write_marker

    check_rebuildable(url)
    engine = sa.create_engine(url)
    try:
        write_marker(engine, "reference", plan.seed)  # first: a half-built world is ours
        create_reference_tables(engine, drop=True)
        md = sa.MetaData()
        shops_t = sa.Table("shops", md, autoload_with=engine)
        accounts_t = sa.Table("accounts", md, autoload_with=engine)
        shops, accounts = database_rows(plan)
        with engine.begin() as conn:
            conn.execute(shops_t.insert(), shops)
            conn.execute(accounts_t.insert(), accounts)
    finally:
        engine.dispose()


def ensure_database(url: str) -> None:
    """Create the embedded demo database on first use (local half only, no Stripe ids):
    shop-backend's tables (:mod:`opskit.demo.shopbackend`)."""
    from opskit.demo import shopbackend

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.exists() and path.stat().st_size > 0:
            return
    shopbackend.write_database(url, shopbackend.build_plan())


def _shop_obj(shop: DemoShop) -> Any:
    from opskit.common.models import Shop

    return Shop(
        id=str(shop.id),
        name=shop.name,
        stripe_secret_key=shop.secret_key,
        stripe_public_key=shop.public_key,
    )
