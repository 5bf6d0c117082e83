"""create_customer never duplicates a person the shop's Stripe already has: it names the
unlinked same-email customer and link_customer links it instead (checked in Stripe,
audited), on SQLite and PostgreSQL through the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import stripe

from opskit.backend import audit
from opskit.backend.db import Database
from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.exceptions import DuplicateCustomer, InputError, LiveWriteRefused
from opskit.ops import Ops
from opskit.sandbox import Sandbox
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key


class World:
    def __init__(self, ops: Ops, sandbox: Sandbox, key1: str, key2: str) -> None:
        self.ops, self.sandbox, self.key1, self.key2 = ops, sandbox, key1, key2

    def customer(self, key: str, email: str, **extra: Any) -> str:
        return self.sandbox.seed(key, "customers", [{"email": email, **extra}])[0]

    def details(self, account_id: int) -> dict[str, Any]:
        _, raw = self.ops.ctx.db.account(account_id)
        return (raw if isinstance(raw, dict) else json.loads(raw)) if raw else {}

    def set_link(self, account_id: int, cid: str) -> None:
        t = self.ops.ctx.db.accounts_table
        value: Any = {"stripe_customer_id": cid}
        if not isinstance(t.c.details.type, sa.JSON):
            value = json.dumps(value)
        with self.ops.ctx.db.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == account_id).values(details=value))

    def creates(self, key: str) -> int:
        return sum(
            1
            for r in self.sandbox.requests(key)
            if r.method == "POST" and r.path == "/v1/customers"
        )

    def last(self) -> Any:
        return audit.read_log(self.ops.ctx.db, limit=1).iloc[0]


@pytest.fixture
def w(db_url: str, sandbox: Sandbox) -> Iterator[World]:
    key1, key2 = make_key("one"), make_key("two")
    insert(
        db_url,
        shops=[
            {"id": 1, "name": "One", "stripe_secret_key": key1},
            {"id": 2, "name": "Two", "stripe_secret_key": key2},
        ],
        accounts=[
            {"id": 10, "shop_id": 1, "email": "Ann@X.io", "name": "Ann", "details": {}},
            {"id": 11, "shop_id": 1, "email": "ben@x.io", "name": "Ben", "details": None},
            {"id": 12, "shop_id": 1, "email": "cy@x.io", "name": "Cy", "details": {}},
            {"id": 20, "shop_id": 2, "email": "di@x.io", "name": "Di", "details": {}},
        ],
    )  # fmt: skip
    settings = Settings(database_url=db_url, stripe_api_base=sandbox.url, max_retry_wait=5.0)
    ops = Ops(Context(db=Database(db_url), settings=settings))
    yield World(ops, sandbox, key1, key2)
    ops.ctx.db.engine.dispose()


def test_create_customer_names_the_same_email_customer_and_linking_it_is_audited(
    w: World,
) -> None:
    # The checkout made a customer (its email lower-cased) and never stored the link.
    cid = w.customer(w.key1, "ann@x.io")
    assert [c["id"] for c in w.ops.same_email_customers(10)] == [cid]
    with pytest.raises(DuplicateCustomer) as info:
        w.ops.create_customer(10, actor="ana")
    assert info.value.customer_ids == [cid] and cid in info.value.message
    assert "link_customer" in info.value.guidance and "allow_duplicate=True" in info.value.guidance
    assert w.creates(w.key1) == 0
    refused = w.last()
    assert (refused["action"], refused["outcome"]) == ("customer.create", "refused")
    assert cid in refused["error"]
    # Linked instead: checked in Stripe, one transaction with its audit row.
    linked = w.ops.link_customer(10, cid, actor="ana")
    assert linked["id"] == cid and w.details(10)["stripe_customer_id"] == cid
    row = w.last()
    assert (row["action"], row["outcome"], row["result"]) == ("customer.link", "ok", cid)
    assert w.ops.same_email_customers(10) == []  # linked now: nothing more to offer
    assert w.ops.link_customer(10, cid, actor="ana")["id"] == cid  # again: already done
    assert json.loads(w.last()["params"])["already_done"] is True
    assert w.creates(w.key1) == 0


def test_only_unlinked_live_customers_of_the_same_email_are_offered(w: World) -> None:
    # Ben's email: one customer linked by another account, one deleted, one of another
    # shop, one of another email: none of them is Ben's duplicate.
    taken = w.customer(w.key1, "ben@x.io")
    w.set_link(12, taken)
    gone = w.customer(w.key1, "ben@x.io")
    stripe.StripeClient(w.key1, base_addresses={"api": w.sandbox.url}).v1.customers.delete(gone)
    w.customer(w.key2, "ben@x.io")
    w.customer(w.key1, "benjamin@x.io")
    assert w.ops.same_email_customers(11) == []
    created = w.ops.create_customer(11, actor="ana")
    assert created["id"] not in (taken, gone) and w.creates(w.key1) == 1
    # A real duplicate can still be made on purpose.
    dup_of = w.customer(w.key2, "di@x.io")
    with pytest.raises(DuplicateCustomer):
        w.ops.create_customer(20, actor="ana")
    second = w.ops.create_customer(20, actor="ana", allow_duplicate=True)
    assert second["id"] != dup_of and w.details(20)["stripe_customer_id"] == second["id"]


def test_link_customer_checks_the_customer_in_the_shops_stripe(w: World) -> None:
    other_shop = w.customer(w.key2, "ann@x.io")
    with pytest.raises(InputError, match="not in shop 1's Stripe account"):
        w.ops.link_customer(10, other_shop, actor="ana")
    assert (w.last()["action"], w.last()["outcome"]) == ("customer.link", "refused")
    someone_else = w.customer(w.key1, "zed@x.io")
    with pytest.raises(InputError, match="is not the account's"):
        w.ops.link_customer(10, someone_else, actor="ana")
    taken = w.customer(w.key1, "ann@x.io")
    w.set_link(12, taken)  # Ann's email, but account 12 links it already
    with pytest.raises(InputError, match="already linked by account 12"):
        w.ops.link_customer(10, taken, actor="ana")
    with pytest.raises(InputError, match="not a Stripe customer id"):
        w.ops.link_customer(10, "ann@x.io", actor="ana")
    assert w.details(10) == {}  # nothing linked by any refusal


def test_link_with_a_live_key_needs_confirmation(db_url: str, sandbox: Sandbox) -> None:
    live = make_key("live").replace("sk_test_", "sk_live_")
    insert(
        db_url,
        shops=[{"id": 1, "name": "Live", "stripe_secret_key": live}],
        accounts=[{"id": 10, "shop_id": 1, "email": "ann@x.io", "details": {}}],
    )
    settings = Settings(database_url=db_url, stripe_api_base=sandbox.url, max_retry_wait=5.0)
    ops = Ops(Context(db=Database(db_url), settings=settings))
    try:
        with pytest.raises(LiveWriteRefused):
            ops.link_customer(10, "cus_whatever", actor="ana")
        assert audit.read_log(ops.ctx.db, limit=1)["outcome"][0] == "refused"
    finally:
        ops.ctx.db.engine.dispose()


def test_when_the_duplicate_check_cannot_ask_stripe_nothing_is_created(w: World) -> None:
    w.ops.ctx.settings = Settings(
        database_url=w.ops.ctx.settings.database_url, stripe_api_base=w.sandbox.url,
        max_retry_wait=0.0,
    )  # fmt: skip
    w.sandbox.configure(key=w.key1, fail_next=50)
    try:
        with pytest.raises(Exception, match="500"):
            w.ops.create_customer(11, actor="ana")
    finally:
        w.sandbox.reset_config()
    assert w.creates(w.key1) == 0 and w.details(11) == {}
    row = w.last()
    assert (row["action"], row["outcome"]) == ("customer.create", "error")
