"""Stripe writes through the sandbox, on SQLite and PostgreSQL: validated, idempotent,
guarded for live keys, audited, and never half-written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
import stripe

from opskit.backend import audit
from opskit.backend.db import Database
from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.exceptions import (
    InputError,
    InvalidAmount,
    LiveWriteRefused,
    StripeCustomerMissing,
    UnknownAccount,
    UnknownShop,
    WriteOutcomeUnknown,
)
from opskit.sandbox import Sandbox
from opskit.writes import actions
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key


@dataclass
class Backend:
    ctx: Context
    sandbox: Sandbox
    key1: str
    key2: str

    def stripe(self, key: str) -> stripe.StripeClient:
        return stripe.StripeClient(key, base_addresses={"api": self.sandbox.url})

    def customers(self, key: str) -> list[dict[str, Any]]:
        page = self.stripe(key).v1.customers.list(params={"limit": 100})
        return [c.to_dict() for c in page.data]

    def posts(self, key: str, path: str) -> int:
        return sum(1 for r in self.sandbox.requests(key) if r.method == "POST" and r.path == path)

    def details(self, account_id: int) -> dict[str, Any]:
        _, raw = self.ctx.db.account(account_id)
        return json.loads(raw) if raw else {}


@pytest.fixture
def b(db_url: str, sandbox: Sandbox) -> Iterator[Backend]:
    key1, key2 = make_key("one"), make_key("two")
    insert(
        db_url,
        shops=[
            {"id": 1, "name": "One", "stripe_secret_key": key1},
            {"id": 2, "name": "Two", "stripe_secret_key": key2},
            {"id": 3, "name": "Unset", "stripe_secret_key": None},
        ],
        accounts=[
            {"id": 10, "shop_id": 1, "email": "ann@x.io", "name": "Ann",
             "details": {"plan": "gold", "stripe_customer_id": None}},
            {"id": 11, "shop_id": 1, "email": "ben@x.io", "name": "Ben", "details": {}},
            {"id": 20, "shop_id": 2, "email": "cy@x.io", "name": "Cy", "details": {"x": 1}},
            {"id": 30, "shop_id": 3, "email": "di@x.io", "name": "Di", "details": {}},
        ],
    )  # fmt: skip
    settings = Settings(database_url=db_url, stripe_api_base=sandbox.url, max_retry_wait=5.0)
    ctx = Context(db=Database(db_url), settings=settings)
    yield Backend(ctx, sandbox, key1, key2)
    ctx.db.engine.dispose()


def link(b: Backend, account_id: int, key: str, **details: Any) -> str:
    """Create a customer for the account in the sandbox and link it in details (no opskit)."""
    cid = b.sandbox.seed(key, "customers", [{"email": f"{account_id}@x.io"}])[0]
    t = b.ctx.db.accounts_table
    value = {**b.details(account_id), "stripe_customer_id": cid, **details}
    stored: Any = value if isinstance(t.c.details.type, sa.JSON) else json.dumps(value)
    with b.ctx.db.engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == account_id).values(details=stored))
    return cid


# -- customers ---------------------------------------------------------------------------------


def test_create_customer_links_it_keeps_other_keys_and_repeats_as_a_noop(b: Backend) -> None:
    cus = actions.create_customer(b.ctx, 10, actor="ana")
    assert isinstance(cus, dict) and cus["id"].startswith("cus_") and cus["email"] == "ann@x.io"
    assert b.details(10) == {"plan": "gold", "stripe_customer_id": cus["id"]}
    log = audit.read_log(b.ctx.db)
    assert list(log["action"]) == ["account.set_details", "customer.create"]
    created = log.iloc[1]
    assert (created["outcome"], created["result"], created["shop_id"]) == ("ok", cus["id"], "1")
    assert created["idempotency_key"].startswith("opskit-v1-")
    assert created["stripe_request_id"].startswith("req_")
    assert b.key1 not in log.to_string()
    # The same call again: the same customer back, nothing created.
    again = actions.create_customer(b.ctx, 10, actor="ana")
    assert again["id"] == cus["id"]
    assert len(b.customers(b.key1)) == 1 and b.posts(b.key1, "/v1/customers") == 1
    # Another call while a live customer is linked is refused; force replaces the link.
    with pytest.raises(InputError, match="already links customer"):
        actions.create_customer(b.ctx, 10, name="Ann B.", actor="ana")
    assert audit.read_log(b.ctx.db, limit=1)["outcome"][0] == "refused"
    forced = actions.create_customer(b.ctx, 10, name="Ann B.", actor="ana", force=True)
    assert forced["id"] != cus["id"] and b.details(10)["stripe_customer_id"] == forced["id"]


def test_dangling_link_to_a_deleted_customer_is_replaced(b: Backend) -> None:
    old = link(b, 11, b.key1)
    b.stripe(b.key1).v1.customers.delete(old)
    cus = actions.create_customer(b.ctx, 11, actor="ana")
    assert cus["id"] != old and b.details(11)["stripe_customer_id"] == cus["id"]
    assert set(audit.read_log(b.ctx.db)["outcome"]) == {"ok"}
    # A link to an id this shop's Stripe does not know (404) is replaced the same way.
    t = b.ctx.db.accounts_table
    gone: Any = {"stripe_customer_id": "cus_nowhere"}
    if not isinstance(t.c.details.type, sa.JSON):
        gone = json.dumps(gone)
    with b.ctx.db.engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == 10).values(details=gone))
    new = actions.create_customer(b.ctx, 10, actor="ana")
    assert b.details(10) == {"stripe_customer_id": new["id"]}
    assert set(audit.read_log(b.ctx.db)["outcome"]) == {"ok"}


def test_customer_kept_when_the_database_write_fails_and_a_rerun_repairs(b: Backend) -> None:
    from tests.test_sync import _install_failing_trigger

    _install_failing_trigger(b.ctx, 10)
    with pytest.raises(actions.PartialWrite) as info:
        actions.create_customer(b.ctx, 10, actor="ana")
    [cus] = b.customers(b.key1)
    assert cus["id"] in str(info.value) and "boom" in str(info.value)
    assert b.details(10).get("stripe_customer_id") is None  # nothing half-written locally
    log = audit.read_log(b.ctx.db)
    assert list(zip(log["action"], log["outcome"], log["result"], strict=True)) == [
        ("account.set_details", "error", cus["id"]),
        ("customer.create", "ok", cus["id"]),
    ]
    with b.ctx.db.engine.begin() as conn:
        conn.execute(
            sa.text("DROP TRIGGER boom" + (" ON accounts" if b.ctx.db.dialect != "sqlite" else ""))
        )
    again = actions.create_customer(b.ctx, 10, actor="ana")  # same key: Stripe replays
    assert again["id"] == cus["id"] and len(b.customers(b.key1)) == 1
    assert b.details(10)["stripe_customer_id"] == cus["id"]


def test_a_lost_answer_is_found_out_then_sent_under_a_new_key(b: Backend) -> None:
    # A dropped connection, then 500s: the write's outcome is unknown, so opskit asks
    # Stripe (by its opskit_key tag) before sending again, and sends under a new key.
    # (allow_duplicate: the faults hit the write itself, not the duplicate check's reads,
    # whose own failure test_link_customer covers.)
    b.sandbox.configure(key=b.key1, drop_next=1, fail_next=2)
    cus = actions.create_customer(b.ctx, 10, actor="ana", allow_duplicate=True)
    assert len(b.customers(b.key1)) == 1
    assert b.details(10)["stripe_customer_id"] == cus["id"]
    log = audit.read_log(b.ctx.db, action="customer.create")
    first, last = log.iloc[-1], log.iloc[0]
    assert first["outcome"] == "error" and "not in Stripe" in first["resolution"]
    assert last["outcome"] == "ok" and last["result"] == cus["id"]
    assert last["idempotency_key"] == first["idempotency_key"] + ":attempt2"
    assert not log["outcome"].isin(["pending", "unknown"]).any()
    # Stripe keeps failing, lookups included: recorded as unknown, a clear error, no customer.
    b.ctx.settings = Settings(
        database_url=b.ctx.settings.database_url, stripe_api_base=b.sandbox.url, max_retry_wait=0.0
    )
    b.sandbox.configure(key=b.key1, fail_next=50)
    with pytest.raises(WriteOutcomeUnknown, match="recorded as unknown"):
        actions.create_customer(b.ctx, 11, actor="ana", allow_duplicate=True)
    b.sandbox.reset_config()
    assert len(b.customers(b.key1)) == 1 and b.details(11) == {}
    last = audit.read_log(b.ctx.db, limit=1).iloc[0]
    assert (last["action"], last["outcome"]) == ("customer.create", "unknown")
    assert "500" in last["error"] and "looking it up failed" in last["resolution"]


# -- payment intents ---------------------------------------------------------------------------


def test_payment_intent_is_idempotent(b: Backend) -> None:
    cid = link(b, 11, b.key1)
    pi = actions.create_payment_intent(b.ctx, 11, 1999, "USD", actor="ana", description="fix")
    assert (pi["amount"], pi["currency"], pi["customer"]) == (1999, "usd", cid)
    again = actions.create_payment_intent(b.ctx, 11, 1999, "usd", actor="ana", description="fix")
    assert again["id"] == pi["id"]
    listed = b.stripe(b.key1).v1.payment_intents.list(params={"customer": cid}).data
    assert [p.id for p in listed] == [pi["id"]]
    assert b.posts(b.key1, "/v1/payment_intents") == 2  # the second answered by replay
    other = actions.create_payment_intent(b.ctx, 11, 1999, "usd", actor="ana", nonce="second")
    assert other["id"] != pi["id"]
    jpy = actions.create_payment_intent(b.ctx, 11, 500, "jpy", actor="ana", idempotency_key="k1")
    assert (jpy["amount"], jpy["currency"]) == (500, "jpy")
    log = audit.read_log(b.ctx.db, action="payment_intent.create")
    assert list(log["result"]) == [jpy["id"], other["id"], pi["id"], pi["id"]]
    assert log["idempotency_key"].iloc[0] == "k1"


@pytest.mark.parametrize("amount", [19.99, 0, -5, True, "100", 100_000_000])
def test_bad_amounts_refused_before_any_request(b: Backend, amount: Any) -> None:
    link(b, 11, b.key1)
    before = b.sandbox.request_count(b.key1)
    with pytest.raises(InvalidAmount):
        actions.create_payment_intent(b.ctx, 11, amount, "usd", actor="ana")
    with pytest.raises(InvalidAmount, match="ISO 4217"):
        actions.create_payment_intent(b.ctx, 11, 100, "usdx", actor="ana")
    assert b.sandbox.request_count(b.key1) == before


def test_bad_targets(b: Backend) -> None:
    with pytest.raises(StripeCustomerMissing, match="account 11") as info:
        actions.create_payment_intent(b.ctx, 11, 100, "usd", actor="ana")
    assert "create_customer(11)" in info.value.guidance
    with pytest.raises(UnknownAccount):
        actions.create_payment_intent(b.ctx, 999, 100, "usd")
    with pytest.raises(UnknownAccount):
        actions.create_customer(b.ctx, 999)
    with pytest.raises(UnknownShop):
        actions.cancel_subscription(b.ctx, "sub_x", shop_id=42)
    from opskit.common.exceptions import StripeNotConfigured

    with pytest.raises(StripeNotConfigured):
        actions.create_customer(b.ctx, 30, actor="ana")
    # Each refusal is a row (newest first), refused before any request.
    log = audit.read_log(b.ctx.db)
    assert log["outcome"].tolist() == ["error", "refused", "refused", "refused", "refused"]
    assert log["target"].tolist()[1:] == [
        "subscription:sub_x", "account:999", "account:999", "account:11"
    ]  # fmt: skip
    assert b.sandbox.request_count(b.key1) == 0


# -- subscriptions -----------------------------------------------------------------------------


def test_subscription_lifecycle_and_other_shop(b: Backend) -> None:
    cid = link(b, 11, b.key1)
    [price] = b.sandbox.seed(
        b.key1,
        "prices",
        [{"unit_amount": 1000, "currency": "usd", "recurring": {"interval": "month"}}],
    )
    sub = actions.create_subscription(b.ctx, 11, price, actor="ana", trial_period_days=7)
    assert sub["customer"] == cid and sub["status"] == "trialing"
    assert b.details(11) == {
        "stripe_customer_id": cid,
        "stripe_subscription_id": sub["id"],
        "subscription_status": "trialing",
        "stripe_price_id": price,
    }
    again = actions.create_subscription(b.ctx, 11, price, actor="ana", trial_period_days=7)
    assert again["id"] == sub["id"] and b.posts(b.key1, "/v1/subscriptions") == 1
    with pytest.raises(InputError, match="bill the customer twice"):
        actions.create_subscription(b.ctx, 11, price, actor="ana")
    # Shop 2's Stripe account does not know shop 1's subscription.
    with pytest.raises(actions.UnknownSubscription, match="not in shop 2") as info:
        actions.cancel_subscription(b.ctx, sub["id"], shop_id=2, actor="ana")
    assert "shop_id" in info.value.guidance
    assert b.details(11)["subscription_status"] == "trialing"
    ended = actions.cancel_subscription(b.ctx, sub["id"], shop_id=1, at_period_end=True)
    assert ended["cancel_at_period_end"] is True and ended["status"] == "trialing"
    now = actions.cancel_subscription(b.ctx, sub["id"], shop_id=1, at_period_end=False)
    assert now["status"] == "canceled" and b.details(11)["subscription_status"] == "canceled"
    repeat = actions.cancel_subscription(b.ctx, sub["id"], shop_id=1, at_period_end=False)
    assert repeat["status"] == "canceled"
    log = audit.read_log(b.ctx.db, action="subscription.cancel")
    assert log["outcome"].tolist() == ["ok", "ok", "ok", "error"]
    assert json.loads(log["params"][0])["already_done"] is True
    # Ended: a new subscription is allowed now.
    new = actions.create_subscription(b.ctx, 11, price, actor="ana", trial_period_days=14)
    assert new["id"] != sub["id"] and b.details(11)["stripe_subscription_id"] == new["id"]


# -- live keys ---------------------------------------------------------------------------------


def test_live_writes_need_confirmation(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSKIT_ALLOW_LIVE_KEYS_ELSEWHERE", "1")  # a live key to the sandbox
    live, test = "sk_live_" + make_key("L")[8:], make_key("T")
    insert(
        db_url,
        shops=[{"id": 1, "name": "Live", "stripe_secret_key": live},
               {"id": 2, "name": "Test", "stripe_secret_key": test}],
        accounts=[{"id": 1, "shop_id": 1, "email": "l@x.io", "details": {}},
                  {"id": 2, "shop_id": 2, "email": "t@x.io", "details": {}}],
    )  # fmt: skip
    with Sandbox(keys=[live, test]) as sb:
        ctx = Context(Database(db_url), Settings(database_url=db_url, stripe_api_base=sb.url))
        with pytest.raises(LiveWriteRefused, match="live Stripe key") as info:
            actions.create_customer(ctx, 1, actor="ana")
        assert live not in str(info.value) and "OPSKIT_ALLOW_LIVE_WRITES" in str(info.value)
        assert sb.request_count(live) == 0
        refused = audit.read_log(ctx.db).iloc[0]
        assert (refused["outcome"], refused["shop_id"]) == ("refused", "1")
        assert actions.create_customer(ctx, 2, actor="ana")["id"]  # test key: no confirmation
        assert actions.create_customer(ctx, 1, actor="ana", confirm=True)["id"]
        ctx.settings = Settings(stripe_api_base=sb.url, allow_live_writes=True)
        with pytest.raises(InputError, match="already links"):  # past the guard
            actions.create_customer(ctx, 1, actor="ana", name="other")
        ctx.db.engine.dispose()


# -- review: stale idempotent replays ----------------------------------------------------------


def test_cancel_again_after_a_reactivation_really_cancels(b: Backend) -> None:
    link(b, 11, b.key1)
    [price] = b.sandbox.seed(
        b.key1,
        "prices",
        [{"unit_amount": 1000, "currency": "usd", "recurring": {"interval": "month"}}],
    )
    sub = actions.create_subscription(b.ctx, 11, price, actor="ana", trial_period_days=7)
    actions.cancel_subscription(b.ctx, sub["id"], shop_id=1, actor="ana")
    # The customer changes their mind; support reactivates the subscription in Stripe.
    b.stripe(b.key1).v1.subscriptions.update(sub["id"], params={"cancel_at_period_end": False})
    # They change it again: the same cancel call must cancel, not replay the first answer.
    again = actions.cancel_subscription(b.ctx, sub["id"], shop_id=1, actor="ana")
    assert again["cancel_at_period_end"] is True
    assert b.stripe(b.key1).v1.subscriptions.retrieve(sub["id"]).cancel_at_period_end is True
    ok = audit.read_log(b.ctx.db, action="subscription.cancel", outcome="ok")
    assert ok["idempotency_key"].nunique() == 2  # the second cancel went out under its own key


def test_create_customer_after_the_linked_one_was_deleted_and_unlinked(b: Backend) -> None:
    first = actions.create_customer(b.ctx, 11, actor="ana")
    b.stripe(b.key1).v1.customers.delete(first["id"])
    t = b.ctx.db.accounts_table
    stored: Any = {} if isinstance(t.c.details.type, sa.JSON) else "{}"
    with b.ctx.db.engine.begin() as conn:  # what the sync plan's deleted_in_stripe row does
        conn.execute(t.update().where(t.c.id == 11).values(details=stored))
    second = actions.create_customer(b.ctx, 11, actor="ana")
    assert second["id"] != first["id"] and not second.get("deleted")
    assert b.details(11)["stripe_customer_id"] == second["id"]
    live = b.stripe(b.key1).v1.customers.retrieve(second["id"]).to_dict()
    assert not live.get("deleted")


def test_cancel_whose_local_record_cannot_be_read_is_a_partial_write_with_the_id(
    b: Backend,
) -> None:
    link(b, 11, b.key1)
    [price] = b.sandbox.seed(
        b.key1,
        "prices",
        [{"unit_amount": 1000, "currency": "usd", "recurring": {"interval": "month"}}],
    )
    sub = actions.create_subscription(b.ctx, 11, price, actor="ana", trial_period_days=7)
    with b.ctx.db.engine.begin() as conn:  # the accounts table disappears mid-session
        conn.execute(sa.text("ALTER TABLE accounts RENAME TO accounts_gone"))
    with pytest.raises(actions.PartialWrite, match=sub["id"]):
        actions.cancel_subscription(b.ctx, sub["id"], shop_id=1, at_period_end=False, actor="ana")
    assert b.stripe(b.key1).v1.subscriptions.retrieve(sub["id"]).status == "canceled"
    errors = audit.read_log(b.ctx.db, outcome="error")
    assert sub["id"] in set(errors["result"])  # the Stripe change is on record for repair
