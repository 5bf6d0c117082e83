"""A small backend for fault tests: two shops (sandbox keys), a few accounts, helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import stripe

from opskit.backend import audit
from opskit.backend.db import Database
from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.sandbox import Sandbox
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key


@dataclass
class World:
    url: str
    ctx: Context
    sandbox: Sandbox
    key: str

    def stripe(self) -> stripe.StripeClient:
        return stripe.StripeClient(self.key, base_addresses={"api": self.sandbox.url})

    def posts(self, path: str | None = None) -> int:
        return sum(
            1
            for r in self.sandbox.requests(self.key)
            if r.method == "POST" and (path is None or r.path == path)
        )

    def customers(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.stripe().v1.customers.list(params={"limit": 100}).data]

    def details(self, account_id: int) -> dict[str, Any]:
        _, raw = self.ctx.db.account(account_id)
        return json.loads(raw) if isinstance(raw, str) and raw else dict(raw or {})

    def log(self, **filters: Any) -> Any:
        return audit.read_log(self.ctx.db, **filters)

    def link(self, account_id: int, **extra: Any) -> str:
        [cid] = self.sandbox.seed(self.key, "customers", [{"email": f"{account_id}@x.io"}])
        t = self.ctx.db.accounts_table
        value = {**self.details(account_id), "stripe_customer_id": cid, **extra}
        stored: Any = value if isinstance(t.c.details.type, sa.JSON) else json.dumps(value)
        with self.ctx.db.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == account_id).values(details=stored))
        return cid

    def price(self) -> str:
        [pid] = self.sandbox.seed(
            self.key,
            "prices",
            [{"unit_amount": 700, "currency": "eur", "recurring": {"interval": "month"}}],
        )
        return pid


def make_world(url: str, sandbox: Sandbox, *, settings: Settings | None = None) -> World:
    key = make_key("fault")
    insert(
        url,
        shops=[{"id": 1, "name": "One", "stripe_secret_key": key}],
        accounts=[
            {"id": i, "shop_id": 1, "email": f"{i}@x.io", "name": f"N{i}", "details": {"k": i}}
            for i in range(10, 20)
        ],
    )
    settings = settings or Settings(database_url=url, stripe_api_base=sandbox.url, max_retry_wait=1)
    return World(url, Context(db=Database(url), settings=settings), sandbox, key)
