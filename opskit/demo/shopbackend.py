"""The demo as shop-backend: its tables, its ids, its way of using Stripe, drift planted.

One seed decides everything (:func:`build_plan`, no I/O): seven shops with UUID
ids (four reachable test shops, one without a key, one live key the sandbox
rejects, one publishable key in the secret column), accounts whose ``name`` is
the customer's email (no person's name, no timestamps), ``details`` as the
backend leaves them (SQL NULL, JSON null, ``{}``, other keys, a non-object),
Customer snapshots (``stripe_customer`` + ``stripe_synced_at``) fresh and
stale, products with float ``recurring_price_monthly``/``yearly`` and their
Stripe prices under lookup keys ``monthly-<product uuid>`` /
``yearly-<product uuid>``, subscriptions linked only through the customer
(multi-item, fresh and abandoned ``incomplete`` checkouts, past_due, a double
subscription, an unknown product, a drifted price, a canceled one), and orders
with float euro totals.

:func:`populate` fills the sandbox (customers as the checkout creates them:
email only; the rest seeded), then :func:`write_database` writes the tables
with the ids Stripe assigned, on SQLite or PostgreSQL (uuid/json/timestamp
without time zone). Every status of both reports occurs.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opskit.backend.tables import create_shop_backend_tables

__all__ = ["SEED", "SbAccount", "SbPlan", "SbProduct", "SbShop", "build_plan", "populate",
           "write_database"]  # fmt: skip

SEED = 20261129
_NAMES = ["ada", "ben", "chloe", "dev", "elif", "femi", "gia", "hugo", "ines", "jon", "kemi",
          "lars", "mina", "noor", "omar", "pia", "quinn", "rosa", "sami", "tara", "uma", "vik",
          "wen", "xavi", "yuki", "zoe"]  # fmt: skip
_DOMAINS = ["example.com", "example.org", "mail.example.net"]

# Customer-side roles per reachable shop: (role, count); the rest are plain matches.
CUSTOMER_ROLES = [
    ("mismatch_email", 3),
    ("no_customer_id", 4),
    ("bad_details", 2),
    ("missing_in_stripe", 2),
    ("deleted_in_stripe", 2),
    ("wrong_shop", 1),
    ("mode_mismatch", 1),
    ("duplicate_link", 2),
]
# Subscription roles, given to matching accounts of each reachable shop.
SUB_ROLES = [
    ("monthly", 7),
    ("yearly", 1),
    ("multi_item", 2),
    ("incomplete_fresh", 2),
    ("trialing", 1),
    ("abandoned", 1),
    ("expired", 1),
    ("double", 1),
    ("past_due", 1),
    ("unknown_product", 1),
    ("price_drift", 1),
    ("canceled", 1),
]
# Snapshot roles, given to other matching accounts: fresh copies and stale ones.
SNAPSHOT_ROLES = [("fresh", 10), ("stale_email", 1), ("stale_payment_method", 1),
                  ("stale_deleted_copy", 1)]  # fmt: skip


@dataclass
class SbShop:
    id: uuid.UUID
    name: str
    secret_key: str | None
    public_key: str | None
    reachable: bool


@dataclass
class SbProduct:
    id: uuid.UUID
    shop_id: uuid.UUID
    price: float
    monthly: float | None
    yearly: float | None
    stripe_monthly: int | None = None  # what the Stripe price says (cents)
    stripe_yearly: int | None = None
    monthly_price_id: str | None = None
    yearly_price_id: str | None = None


@dataclass
class SbAccount:
    id: uuid.UUID
    shop_id: uuid.UUID
    email: str  # stored in accounts.name
    role: str
    sub_role: str | None = None
    snapshot_role: str | None = None
    details_kind: str = "object"  # object / sql-null / json-null / empty / list / string
    extra: dict[str, Any] = field(default_factory=dict)  # other details keys, kept
    customer_id: str | None = None
    snapshot: dict[str, Any] | None = None
    synced_at: str | None = None


@dataclass
class SbOrder:
    id: uuid.UUID
    number: int
    shop_id: uuid.UUID
    account_id: uuid.UUID | None
    total: float
    status: str
    created_at: datetime
    completed_at: datetime | None


@dataclass
class SbPlan:
    shops: list[SbShop]
    accounts: list[SbAccount]
    products: list[SbProduct]
    orders: list[SbOrder]
    orphans: dict[uuid.UUID, list[str]]  # shop -> emails of customers no account links
    seed: int

    def shop_id(self, name: str) -> str:
        """A demo shop's id (text) by its name."""
        return next(str(s.id) for s in self.shops if s.name == name)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _key(rng: random.Random, prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(rng.choice(alphabet) for _ in range(24))


def build_plan(seed: int = SEED) -> SbPlan:
    """Decide every shop, account, product, order and planted drift from ``seed``."""
    rng = random.Random(seed)
    shops = [
        SbShop(_uuid(rng), "Northwind Coffee", _key(rng, "sk_test_"), _key(rng, "pk_test_"), True),
        SbShop(_uuid(rng), "Blue Harbor Books", _key(rng, "sk_test_"), _key(rng, "pk_test_"), True),
        SbShop(_uuid(rng), "Alpine Gear", "  " + _key(rng, "sk_test_") + " ",
               _key(rng, "pk_test_"), True),
        SbShop(_uuid(rng), "Kyoto Tea House", _key(rng, "sk_test_"), _key(rng, "pk_test_"), True),
        SbShop(_uuid(rng), "Pop-up Store", None, None, False),
        SbShop(_uuid(rng), "Legacy Outlet", _key(rng, "sk_live_"), _key(rng, "pk_live_"), False),
        SbShop(_uuid(rng), "Corner Kiosk", _key(rng, "pk_test_"), None, False),
    ]  # fmt: skip
    sizes = [70, 60, 55, 50, 15, 20, 12]
    accounts: list[SbAccount] = []
    products: list[SbProduct] = []
    orders: list[SbOrder] = []
    orphans: dict[uuid.UUID, list[str]] = {}
    used: set[str] = set()
    number = 1000
    t0 = datetime(2026, 9, 1, 8, 0)
    for shop, size in zip(shops, sizes, strict=True):
        roles: list[str] = []
        if shop.reachable:
            for role, count in CUSTOMER_ROLES:
                roles += [role] * count
        roles += ["match"] * (size - len(roles))
        rng.shuffle(roles)
        mine = []
        for role in roles:
            while True:
                email = f"{rng.choice(_NAMES)}.{rng.choice(_NAMES)}{rng.randrange(100)}@" + (
                    rng.choice(_DOMAINS)
                )
                if email not in used:
                    used.add(email)
                    break
            acc = SbAccount(_uuid(rng), shop.id, email, role)
            acc.extra = rng.choice([{}, {}, {"newsletter": True}, {"locale": "nl"}])
            mine.append(acc)
        unlinked = [a for a in mine if a.role == "no_customer_id"]
        for acc, kind in zip(unlinked, ["sql-null", "json-null", "empty", "object"], strict=False):
            acc.details_kind = kind
        for acc, kind in zip([a for a in mine if a.role == "bad_details"], ["list", "string"],
                             strict=False):  # fmt: skip
            acc.details_kind = kind
        if not shop.reachable:  # no Stripe: a mix of empty details and links nobody can check
            for acc in mine:
                acc.details_kind = rng.choice(["object", "sql-null", "json-null"])
        if shop.reachable:
            matches = [a for a in mine if a.role == "match"]
            queue = [r for role, n in SUB_ROLES for r in [role] * n]
            for acc, sub_role in zip(matches, queue, strict=False):
                acc.sub_role = sub_role
            rest = [a for a in matches if a.sub_role is None] + [
                a for a in matches if a.sub_role in ("monthly",)
            ]
            snaps = [r for role, n in SNAPSHOT_ROLES for r in [role] * n]
            for acc, snap_role in zip(rest, snaps, strict=False):
                acc.snapshot_role = snap_role
            orphans[shop.id] = [unlinked[0].email, unlinked[1].email] + [
                f"walk-in.{i}.{str(shop.id)[:4]}@example.org" for i in range(2)
            ]
            products += _products(rng, shop.id)
        for acc in mine:  # orders: float euro totals, some guests, some tricky cents
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                number += 1
                created = t0 + timedelta(hours=rng.randrange(24 * 80), minutes=rng.randrange(60))
                done = rng.random() < 0.8
                total = rng.choice(
                    [round(rng.uniform(3, 150), 2), 19.995, 0.285, 1.005, 29.95, 9.99]
                )
                orders.append(
                    SbOrder(_uuid(rng), number, shop.id, acc.id if rng.random() > 0.05 else None,
                            total, "complete" if done else "pending", created,
                            created + timedelta(minutes=rng.randrange(5, 600)) if done else None)
                )  # fmt: skip
        accounts += mine
    return SbPlan(shops, accounts, products, orders, orphans, seed)


def _products(rng: random.Random, shop_id: uuid.UUID) -> list[SbProduct]:
    """A base plan, an add-on, a product whose local price was raised, a one-time product."""
    base = SbProduct(_uuid(rng), shop_id, 9.99, 9.99, 99.0)
    addon = SbProduct(_uuid(rng), shop_id, 4.5, 4.5, 45.0)
    raised = SbProduct(_uuid(rng), shop_id, 12.99, 12.99, None)
    one_time = SbProduct(_uuid(rng), shop_id, 24.95, None, None)
    for p in (base, addon, raised, one_time):
        p.stripe_monthly = _cents(p.monthly)
        p.stripe_yearly = _cents(p.yearly)
    raised.stripe_monthly = 999  # Stripe still bills the old price: price_drift
    return [base, addon, raised, one_time]


def _cents(value: float | None) -> int | None:
    if value is None:
        return None
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(repr(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# -- Stripe ------------------------------------------------------------------------------------


def populate(plan: SbPlan, sandbox: Any) -> None:
    """Create the Stripe side in ``sandbox``: customers through stripe-python with the email
    only (as the checkout does), prices and subscriptions seeded with their states."""
    from opskit.common.models import Shop
    from opskit.stripeapi.clients import client_for_shop

    reachable = [s for s in plan.shops if s.reachable]
    made: dict[uuid.UUID, list[str]] = {}
    for shop in reachable:
        key = (shop.secret_key or "").strip()
        client = client_for_shop(
            Shop(id=str(shop.id), name=shop.name, stripe_secret_key=key),
            api_base=sandbox.url,
            rate_limit=500.0,
        )
        mine = [a for a in plan.accounts if a.shop_id == shop.id]
        made[shop.id] = _populate_shop(plan, shop, key, client, sandbox, mine)
    ids = [s.id for s in reachable]
    for acc in plan.accounts:
        if acc.role == "wrong_shop":
            acc.customer_id = made[ids[(ids.index(acc.shop_id) + 1) % len(ids)]][0]
        elif acc.role == "missing_in_stripe":
            acc.customer_id = f"cus_Gone{str(acc.id)[:8]}"


def _populate_shop(
    plan: SbPlan, shop: SbShop, key: str, client: Any, sandbox: Any, accounts: list[SbAccount]
) -> list[str]:
    now = datetime.now(UTC)
    prices = _prices(plan, shop, key, sandbox)
    plain: list[str] = []
    dups = [a for a in accounts if a.role == "duplicate_link"]
    for acc in accounts:
        if acc.role in ("no_customer_id", "bad_details", "missing_in_stripe", "wrong_shop"):
            continue
        if acc.role == "mode_mismatch":  # a live-mode customer behind the shop's test key
            (acc.customer_id,) = sandbox.seed_other_mode(key, "customers", [{"email": acc.email}])
            continue
        if acc.role == "duplicate_link" and acc is not dups[0]:
            continue
        email = acc.email if acc.role != "mismatch_email" else "old." + acc.email
        cus = client.v1.customers.create(params={"email": email})
        acc.customer_id = cus.id
        if acc.role == "match":
            plain.append(cus.id)
        if acc.role == "deleted_in_stripe":
            client.v1.customers.delete(cus.id)
    for a in dups[1:]:
        a.customer_id = dups[0].customer_id
    walk_ins = []
    for email in plan.orphans.get(shop.id, []):
        walk_ins.append(client.v1.customers.create(params={"email": email}).id)
    _subscriptions(shop, key, sandbox, accounts, prices, walk_ins[-1], now)
    _snapshots(client, accounts, now)
    return plain


def _prices(plan: SbPlan, shop: SbShop, key: str, sandbox: Any) -> dict[str, str]:
    """Stripe prices of the shop's products under the backend's lookup keys."""
    mine = [p for p in plan.products if p.shop_id == shop.id]
    out: dict[str, str] = {}
    names = ["base", "addon", "raised", "one_time"]
    for name, p in zip(names, mine, strict=True):
        [product] = sandbox.seed(key, "products", [{"name": f"{shop.name} {name}"}])
        if p.stripe_monthly is not None:
            [p.monthly_price_id] = sandbox.seed(key, "prices", [
                {"unit_amount": p.stripe_monthly, "currency": "eur", "product": product,
                 "recurring": {"interval": "month"}, "lookup_key": f"monthly-{p.id}"}])  # fmt: skip
            out[f"{name}_monthly"] = p.monthly_price_id
        if p.stripe_yearly is not None:
            [p.yearly_price_id] = sandbox.seed(key, "prices", [
                {"unit_amount": p.stripe_yearly, "currency": "eur", "product": product,
                 "recurring": {"interval": "year"}, "lookup_key": f"yearly-{p.id}"}])  # fmt: skip
            out[f"{name}_yearly"] = p.yearly_price_id
    # a price whose lookup key names a product this shop no longer has
    [gone] = sandbox.seed(key, "products", [{"name": f"{shop.name} retired"}])
    [out["retired"]] = sandbox.seed(key, "prices", [
        {"unit_amount": 1500, "currency": "eur", "product": gone,
         "recurring": {"interval": "month"},
         "lookup_key": f"monthly-{uuid.UUID(int=shop.id.int ^ 1)}"}])  # fmt: skip
    return out


def _subscriptions(
    shop: SbShop,
    key: str,
    sandbox: Any,
    accounts: list[SbAccount],
    prices: dict[str, str],
    walk_in: str,
    now: datetime,
) -> None:
    epoch = int(now.timestamp())
    day = 86400
    specs: list[dict[str, Any]] = []
    for acc in accounts:
        role, cus = acc.sub_role, acc.customer_id
        if not role or not cus:
            continue
        base = {"customer": cus, "created": epoch - 40 * day}
        if role == "monthly":
            specs.append({**base, "price": prices["base_monthly"]})
        elif role == "yearly":
            specs.append({**base, "price": prices["base_yearly"]})
        elif role == "multi_item":
            specs.append({**base, "items": [{"price": prices["base_monthly"]},
                                            {"price": prices["addon_monthly"]}]})  # fmt: skip
        elif role == "incomplete_fresh":
            specs.append({"customer": cus, "created": epoch - 3600, "status": "incomplete",
                          "price": prices["base_monthly"]})  # fmt: skip
        elif role == "trialing":
            specs.append({**base, "status": "trialing", "price": prices["addon_monthly"],
                          "trial_end": epoch + 7 * day})  # fmt: skip
        elif role == "abandoned":
            specs.append({"customer": cus, "created": epoch - 3 * day, "status": "incomplete",
                          "price": prices["base_monthly"]})  # fmt: skip
        elif role == "expired":
            specs.append(
                {
                    "customer": cus,
                    "created": epoch - 9 * day,
                    "status": "incomplete_expired",
                    "price": prices["base_yearly"],
                }
            )
        elif role == "double":
            specs.append({**base, "price": prices["base_monthly"]})
            specs.append({**base, "created": epoch - 5 * day, "price": prices["base_yearly"]})
        elif role == "past_due":
            specs.append({**base, "status": "past_due", "price": prices["base_monthly"]})
        elif role == "unknown_product":
            specs.append({**base, "price": prices["retired"]})
        elif role == "price_drift":
            specs.append({**base, "price": prices["raised_monthly"]})
        elif role == "canceled":
            specs.append({**base, "status": "canceled", "price": prices["addon_monthly"],
                          "canceled_at": epoch - 2 * day})  # fmt: skip
    specs.append(
        {"customer": walk_in, "created": epoch - 20 * day, "price": prices["base_monthly"]}
    )
    sandbox.seed(key, "subscriptions", specs)


def _snapshots(client: Any, accounts: list[SbAccount], now: datetime) -> None:
    """The admin sync's copies: the live customer as it was, and when it was taken."""
    for acc in accounts:
        if not acc.snapshot_role or not acc.customer_id:
            continue
        live = client.v1.customers.retrieve(acc.customer_id).to_dict()
        snap = json.loads(json.dumps(live))
        if acc.snapshot_role == "stale_email":  # the customer changed their email since
            client.v1.customers.update(acc.customer_id, params={"email": "new." + acc.email})
        elif acc.snapshot_role == "stale_payment_method":  # a card was added since
            pm = client.v1.payment_methods.create(
                params={
                    "type": "card",
                    "card": {
                        "number": "4242424242424242",
                        "exp_month": 12,
                        "exp_year": 2034,
                        "cvc": "123",
                    },
                }
            )
            client.v1.payment_methods.attach(pm.id, params={"customer": acc.customer_id})
            client.v1.customers.update(acc.customer_id, params={
                "invoice_settings": {"default_payment_method": pm.id}})  # fmt: skip
        elif acc.snapshot_role == "stale_deleted_copy":  # a copy of a customer since replaced
            snap["id"] = "cus_Replaced" + acc.customer_id[-6:]
        acc.snapshot = snap
        hours = int(hashlib.sha256(acc.email.encode()).hexdigest(), 16) % 24
        acc.synced_at = (now - timedelta(days=3, hours=hours)).isoformat()


# -- the database ------------------------------------------------------------------------------


def _details(acc: SbAccount) -> Any:
    """The account's details as the backend's JSON column holds them (sa.null(): SQL NULL)."""
    kind = acc.details_kind
    if kind == "sql-null":
        return sa.null()
    if kind == "json-null":
        return sa.JSON.NULL
    if kind == "empty":
        return {}
    if kind == "list":
        return [acc.email]
    if kind == "string":
        return "cus_" + acc.email.split("@")[0]
    details: dict[str, Any] = dict(acc.extra)
    if acc.customer_id:
        details["stripe_customer_id"] = acc.customer_id
    if acc.snapshot is not None:
        details["stripe_customer"] = acc.snapshot
        details["stripe_synced_at"] = acc.synced_at
    return details


def database_rows(plan: SbPlan, dialect: str = "sqlite") -> dict[str, list[dict[str, Any]]]:
    """Rows for shops, accounts, products and orders (ids as UUIDs on PostgreSQL, text else)."""

    def i(value: uuid.UUID | None) -> Any:
        return value if value is None or dialect == "postgresql" else str(value)

    created = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    return {
        "shops": [
            {
                "id": i(s.id),
                "name": s.name,
                "stripe_secret_key": s.secret_key,
                "stripe_public_key": s.public_key,
                "config": {"currency": "EUR"},
                "vat_standard": 21.0,
                "created_at": created,
                "modified_at": created,
            }
            for s in plan.shops
        ],  # fmt: skip
        "accounts": [
            {
                "id": i(a.id),
                "shop_id": i(a.shop_id),
                "name": a.email,
                "hash_name": hashlib.sha256(a.email.encode()).hexdigest()[:32],
                "details": _details(a),
            }
            for a in plan.accounts
        ],  # fmt: skip
        "products": [
            {
                "id": i(p.id),
                "shop_id": i(p.shop_id),
                "price": p.price,
                "recurring_price_monthly": p.monthly,
                "recurring_price_yearly": p.yearly,
                "tax_category": "standard",
                "stock": 100,
                "created_at": created,
                "modified_at": created,
            }
            for p in plan.products
        ],  # fmt: skip
        "orders": [
            {
                "id": i(o.id),
                "customer_order_id": o.number,
                "shop_id": i(o.shop_id),
                "account_id": i(o.account_id),
                "order_info": [{"product": "demo", "quantity": 1}],
                "total": o.total,
                "shipping_fee_inc_btw": 0.0,
                "status": o.status,
                "created_at": o.created_at,
                "completed_at": o.completed_at,
            }
            for o in plan.orders
        ],  # fmt: skip
    }


def write_database(url: str, plan: SbPlan) -> None:
    """(Re)create shop-backend's tables at ``url`` and fill them from ``plan``.

    Only in an empty database or one a demo built (:mod:`opskit.demo.marker`);
    raises :class:`~opskit.demo.marker.NotADemoDatabase` before anything is dropped.
    """
    from opskit.demo.marker import check_rebuildable, write_marker

    check_rebuildable(url)
    engine = sa.create_engine(url)
    try:
        write_marker(engine, "shop-backend", plan.seed)  # first: a half-built world is ours
        for old in ("orders", "products", "licenses", "accounts", "shops"):  # any older demo
            with engine.begin() as conn:
                if sa.inspect(conn).has_table(old):
                    conn.execute(sa.text(f'DROP TABLE "{old}"'))
        md = create_shop_backend_tables(engine)
        rows = database_rows(plan, engine.dialect.name)
        with engine.begin() as conn:
            for name in ("shops", "accounts", "products", "orders"):
                if name == "accounts":
                    for row in rows[name]:  # one by one: NULL, JSON null and objects mix
                        conn.execute(md.tables[name].insert().values(**row))
                elif rows[name]:
                    conn.execute(md.tables[name].insert(), rows[name])
    finally:
        engine.dispose()
