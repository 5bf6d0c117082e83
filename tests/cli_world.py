"""A small world for the breaker's findings: two shops in the session sandbox, one of them
named with a terminal escape sequence and Rich markup, linked accounts, one paid payment
(so the shop has a balance), built in about a second on SQLite."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import stripe

from opskit.backend.db import create_reference_tables
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

# Clears the screen and turns it red; Rich markup; a bidi override; an emoji code.
HOSTILE = "\x1b[2J\x1b[31mCLEAR [red]x[/red] \u202eevil :smile:"
RAW = ("\x1b", "\u202e", "\x9b")


@dataclass
class CliWorld:
    url: str
    sandbox: Sandbox
    key: str
    other_key: str
    customers: dict[int, str]  # account id -> cus_ linked in shop 1
    unlinked: str  # a customer of shop 1 no account links
    foreign: str  # a customer of shop 2

    def client(self, key: str | None = None) -> stripe.StripeClient:
        return stripe.StripeClient(key or self.key, base_addresses={"api": self.sandbox.url})

    def env(self) -> dict[str, str]:
        return {"OPSKIT_DATABASE_URL": self.url, "OPSKIT_STRIPE_API_BASE": self.sandbox.url}


def make_cli_world(
    tmp: Path, sandbox: Sandbox, *, pay: bool = False, name: str = HOSTILE
) -> CliWorld:
    url = fresh_sqlite_url(tmp)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    key, other = make_key("cliA"), make_key("cliB")
    a = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    b = stripe.StripeClient(other, base_addresses={"api": sandbox.url})
    customers = {n: a.v1.customers.create({"email": f"{n}@x.io"}).id for n in (10, 11, 12)}
    # no account links it; account 13 (no link) has its email: the sync plan links them
    unlinked = a.v1.customers.create({"email": "13@x.io"}).id
    foreign = b.v1.customers.create({"email": "20@x.io"}).id
    insert(
        url,
        shops=[
            {"id": 1, "name": name, "stripe_secret_key": key},
            {"id": 2, "name": "Other", "stripe_secret_key": other},
        ],
        accounts=[
            *[
                {"id": n, "shop_id": 1, "email": f"{n}@x.io", "details": {"stripe_customer_id": c}}
                for n, c in customers.items()
            ],
            {"id": 13, "shop_id": 1, "email": "13@x.io", "details": {}},
            {
                "id": 20,
                "shop_id": 2,
                "email": "20@x.io",
                "details": {"stripe_customer_id": foreign},
            },
        ],
    )
    if pay:
        pm = a.v1.payment_methods.create(
            {
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "cvc": "123",
                },
            }  # fmt: skip
        )
        a.v1.payment_methods.attach(pm.id, {"customer": customers[10]})
        a.v1.payment_intents.create(
            {
                "amount": 1000,
                "currency": "eur",
                "customer": customers[10],
                "payment_method": pm.id,
                "confirm": True,
            }  # fmt: skip
        )
    return CliWorld(url, sandbox, key, other, customers, unlinked, foreign)
