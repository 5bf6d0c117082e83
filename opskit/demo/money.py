"""The demo's money: orders and payments with every payment-report status planted, per shop.

:func:`plant_money` runs after the demo's shops, accounts and customers exist. For
each shop the sandbox accepts it pays through stripe-python (cards, refunds,
dispute test cards, declines) over the last days of the current month, writes
the matching orders into the backend's ``orders`` table (float euro totals,
naive UTC times, as shop-backend stores them; the table is created in
shop-backend's shape if the demo database has none) and moves the payments back
in time in the sandbox so that automatic payouts have happened. The second shop
pays out by hand (manual payouts, which Stripe cannot itemize).

The world's own complete orders of the last two months (``ops.orders()``, or the
``orders`` table) are paid too, each a couple of minutes after it was placed
(guest orders without a customer), so they read ``match``; the accounts that
placed them are not used for the roles below, so nothing planted competes with
them.

Planted per shop, as roles: ``match`` (two scored, one exact through
``metadata.order_id``), ``amount_mismatch``, ``currency_mismatch`` (a USD payment
for a EUR order), ``refunded``, ``partially_refunded``, ``disputed`` (Stripe's
dispute test card), ``ambiguous`` (two equal orders, two equal payments),
``paid_no_order`` (a payment by a customer
with no order), ``order_unpaid`` (a declined card on a
complete order) and an open ``pending`` order with no payment (no finding).
Shops without a usable key give ``shop_not_configured``, a key the sandbox
refuses gives ``shop_error``.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import stripe

from opskit.ops import Ops
from opskit.sandbox import Sandbox
from opskit.sandbox import money as sandbox_money
from opskit.stripeapi.clients import client_for_shop

__all__ = ["ROLES", "PlantedOrder", "plant_money"]

OK_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000341"
DISPUTE_CARD = "4000000000000259"
PAY_WORLD_DAYS = 62  # the world's own complete orders this far back are paid
MANUAL_SHOP = 2  # the second usable shop pays out by hand

# role -> (order amount in cents, paid amount, payment currency, card)
ROLES: dict[str, tuple[int, int | None, str, str]] = {
    "match": (2400, 2400, "eur", OK_CARD),
    "match_2": (5900, 5900, "eur", OK_CARD),
    "match_metadata": (1250, 1250, "eur", OK_CARD),
    "amount_mismatch": (3999, 4000, "eur", OK_CARD),
    "currency_mismatch": (1500, 1500, "usd", OK_CARD),
    "refunded": (2000, 2000, "eur", OK_CARD),
    "partially_refunded": (8000, 8000, "eur", OK_CARD),
    "disputed": (4500, 4500, "eur", DISPUTE_CARD),
    "ambiguous": (1800, 1800, "eur", OK_CARD),  # planted twice, same account and time
    "paid_no_order": (0, 990, "eur", OK_CARD),  # a customer who has no order
    "order_unpaid": (3300, 3300, "eur", DECLINE_CARD),
    "pending": (700, None, "eur", OK_CARD),  # an open order, nobody paid yet
}


@dataclass
class PlantedOrder:
    shop_id: str
    role: str
    order_id: str | None
    payment_intent: str | None


def _orders_table(engine: sa.Engine) -> sa.Table:
    md = sa.MetaData()
    if sa.inspect(engine).has_table("orders"):
        return sa.Table("orders", md, autoload_with=engine)
    table = sa.Table(  # shop-backend's columns that matter (BACKEND.md)
        "orders",
        md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_order_id", sa.Integer),
        sa.Column("shop_id", sa.String(36)),
        sa.Column("account_id", sa.String(36), nullable=True),
        sa.Column("order_info", sa.JSON),
        sa.Column("total", sa.Float),
        sa.Column("shipping_fee_inc_btw", sa.Float),
        sa.Column("status", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=False)),
        sa.Column("completed_by", sa.String(36), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=False), nullable=True),
    )
    md.create_all(engine)
    return table


def _order_id(table: sa.Table, n: int) -> Any:
    kind = table.c.id.type
    if isinstance(kind, sa.Integer):
        return 900_000 + n
    value = uuid.uuid5(uuid.NAMESPACE_URL, f"opskit-demo-order-{n}")
    return value if isinstance(kind, sa.Uuid) else str(value)


def _cast(table: sa.Table, column: str, value: Any) -> Any:
    if value is None or column not in table.c:
        return value
    kind = table.c[column].type
    if isinstance(kind, sa.Integer):
        return int(value)
    if isinstance(kind, sa.Uuid):
        return uuid.UUID(str(value))
    return str(value)


def _pay(
    client: stripe.StripeClient, customer: str | None, amount: int, currency: str, card: str,
    metadata: dict[str, str],
) -> str:  # fmt: skip
    pm = client.v1.payment_methods.create(
        {"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    params: dict[str, Any] = {
        "amount": amount, "currency": currency, "payment_method": pm.id, "confirm": True,
        "metadata": metadata,
    }  # fmt: skip
    if customer is not None:  # a guest checkout pays without a customer
        client.v1.payment_methods.attach(pm.id, {"customer": customer})
        params["customer"] = customer
    try:
        return client.v1.payment_intents.create(params).id  # type: ignore[arg-type]
    except stripe.CardError as exc:
        body: dict[str, Any] = exc.json_body if isinstance(exc.json_body, dict) else {}
        pi = (body.get("error") or {}).get("payment_intent")
        if pi:
            return str(pi["id"])
        return client.v1.payment_intents.list({"customer": customer, "limit": 1}).data[0].id  # type: ignore[arg-type]


def plant_money(ops: Ops, sandbox: Sandbox, *, seed: int = 15) -> list[PlantedOrder]:
    """Plant orders and payments with every payment status in each usable shop (see module).

    Shops are planted concurrently, each through its own client; the orders go into
    the database in one transaction at the end.
    """
    from concurrent.futures import ThreadPoolExecutor

    now = datetime.now(UTC).replace(microsecond=0)
    start = max(now.replace(day=1, hour=0, minute=0, second=0), now - timedelta(days=12))
    linked = ops.accounts().dropna(subset=["stripe_customer_id"])
    engine = ops.ctx.db.engine
    table = _orders_table(engine)
    shops = [
        s
        for s in ops.ctx.db.shop_objects().values()
        if s.key_info.usable and sandbox.pipeline.valid_key(str(s.stripe_secret_key).strip())
    ]

    existing = _existing_orders(ops, now - timedelta(days=PAY_WORLD_DAYS), now)

    def one(n: int) -> tuple[list[dict[str, Any]], list[PlantedOrder]]:
        shop = shops[n]
        mine = linked[linked["shop_id"].astype("string") == str(shop.id)]
        theirs = existing[existing["shop_id"] == str(shop.id)]
        busy = set(theirs["account_id"].dropna())
        paid = _pay_existing(sandbox, shop, mine, theirs)
        rows, planted = _plant_shop(
            sandbox, shop, mine[~mine["account_id"].astype("string").isin(busy)], table,
            random.Random(seed * 1000 + n), now, start, manual=n + 1 == MANUAL_SHOP,
            first_order=n * 100,
        )  # fmt: skip
        return rows, paid + planted

    with ThreadPoolExecutor(max(1, len(shops))) as pool:
        results = list(pool.map(one, range(len(shops))))
    rows = [r for rs, _ in results for r in rs]
    if rows:
        names = set(table.c.keys())
        with engine.begin() as conn:
            # A re-seeded world replaces the orders planted here (their ids are fixed),
            # never the backend's own demo orders.
            conn.execute(table.delete().where(table.c.id.in_([r["id"] for r in rows])))
            conn.execute(table.insert(), [{k: v for k, v in r.items() if k in names} for r in rows])
    return [p for _, ps in results for p in ps]


def _existing_orders(ops: Ops, start: datetime, now: datetime) -> Any:
    """The world's own complete orders of the planting window (empty without ``ops.orders``)."""
    import pandas as pd

    cols = ["order_id", "shop_id", "account_id", "amount", "created_at"]
    orders = ops._money_orders(None)
    when = orders["created_at"]
    keep = (orders["status"].astype("string") == "complete").fillna(False)
    keep &= (when >= pd.Timestamp(start)) & (when <= pd.Timestamp(now))
    out = orders.loc[keep, cols].copy()
    out["shop_id"] = out["shop_id"].astype("string")
    out["account_id"] = out["account_id"].astype("string")
    return out


def _pay_existing(sandbox: Sandbox, shop: Any, linked: Any, orders: Any) -> list[PlantedOrder]:
    """Pay the world's own orders of the window, so they read ``match`` (guests: no customer)."""
    if not len(orders):
        return []
    key = str(shop.stripe_secret_key).strip()
    client = client_for_shop(shop, api_base=sandbox.url, rate_limit=500.0)
    customer_of = dict(
        zip(linked["account_id"].astype("string"), linked["stripe_customer_id"], strict=True)
    )
    out: list[PlantedOrder] = []
    for order_id, account, amount, created in zip(
        orders["order_id"], orders["account_id"], orders["amount"], orders["created_at"],
        strict=True,
    ):  # fmt: skip
        customer = customer_of.get(account) if isinstance(account, str) else None
        if isinstance(account, str) and customer is None:
            continue  # an account with no customer: the backend could not have charged it
        try:
            pi = _pay(client, customer, int(amount), "eur", OK_CARD, {})
        except stripe.StripeError:
            continue  # a dangling link (deleted or another shop's customer)
        at = int(created.timestamp()) + 120
        sandbox.with_store(key, lambda st, p=pi, t=at: sandbox_money.backdate(st, p, t))
        out.append(PlantedOrder(str(shop.id), "world_order", str(order_id), pi))
    return out


def _plant_shop(
    sandbox: Sandbox,
    shop: Any,
    mine: Any,
    table: sa.Table,
    rng: random.Random,
    now: datetime,
    start: datetime,
    *,
    manual: bool,
    first_order: int,
) -> tuple[list[dict[str, Any]], list[PlantedOrder]]:
    key = str(shop.stripe_secret_key).strip()
    client = client_for_shop(shop, api_base=sandbox.url, rate_limit=500.0)
    planted: list[PlantedOrder] = []
    rows: list[dict[str, Any]] = []
    customers: list[tuple[str, str]] = []
    once = mine["stripe_customer_id"].map(mine["stripe_customer_id"].value_counts()) == 1
    mine = mine[once]  # a customer two accounts link would pay the other account's orders
    for acc, cus in zip(mine["account_id"], mine["stripe_customer_id"], strict=True):
        try:
            live = client.v1.customers.retrieve(str(cus))
        except stripe.InvalidRequestError:
            continue
        if not live.to_dict().get("deleted"):
            customers.append((str(acc), str(cus)))
        if len(customers) >= len(ROLES):
            break
    if len(customers) < len(ROLES):
        return rows, planted
    counter = first_order
    span = max(1, int((now - start).total_seconds()) - 3600)
    for i, (role, (ordered, paid, currency, card)) in enumerate(ROLES.items()):
        account, customer = customers[i]
        copies = 2 if role == "ambiguous" else 1
        when = start + timedelta(seconds=rng.randrange(span))
        for _ in range(copies):
            counter += 1
            order_id = _order_id(table, counter) if role != "paid_no_order" else None
            pi_id = None
            if paid is not None:
                payer = customer  # paid_no_order: an account with no order at all
                meta = {"order_id": str(order_id)} if role == "match_metadata" else {}
                pi_id = _pay(client, payer, paid, currency, card, meta)
                at = int(when.timestamp())
                sandbox.with_store(key, lambda st, p=pi_id, t=at: sandbox_money.backdate(st, p, t))
                if role in ("refunded", "partially_refunded"):
                    params: dict[str, Any] = {"payment_intent": pi_id}
                    if role == "partially_refunded":
                        params["amount"] = paid // 4
                    refund = client.v1.refunds.create(params)  # type: ignore[arg-type]
                    later = int(min(when + timedelta(days=1), now).timestamp())
                    sandbox.with_store(
                        key, lambda st, r=refund.id, t=later: sandbox_money.backdate(st, r, t)
                    )
            if order_id is not None:
                created = (when - timedelta(minutes=rng.randrange(1, 20))).replace(tzinfo=None)
                status = "pending" if role == "pending" else "complete"
                rows.append(
                    {
                        "id": order_id,
                        "customer_order_id": counter,
                        "shop_id": _cast(table, "shop_id", shop.id),
                        "account_id": _cast(table, "account_id", account),
                        "order_info": {"items": [{"demo_role": role}]},
                        "total": ordered / 100,
                        "shipping_fee_inc_btw": 0.0,
                        "status": status,
                        "created_at": created,
                        "completed_at": created if status == "complete" else None,
                    }
                )
            planted.append(
                PlantedOrder(str(shop.id), role, None if order_id is None else str(order_id), pi_id)
            )
    currencies = {c for (_, _, c, _) in ROLES.values()}
    if manual:  # this shop pays out by hand
        sandbox.with_store(key, lambda st: sandbox_money.set_payout_schedule(st, "manual"))
        balance = client.v1.balance.retrieve().to_dict()
        for part in balance.get("available") or []:
            if part["currency"] in currencies and part["amount"] > 0:
                client.v1.payouts.create(
                    {"amount": part["amount"] // 2, "currency": part["currency"]}
                )
    return rows, planted
