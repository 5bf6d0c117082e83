"""Writes and advice that depend on Stripe's state ask Stripe: the double-billing guard lists
the customer's subscriptions, and a 404 "a similar object exists in live mode" is its own
status (mode_mismatch), never "absent". On the sandbox through stripe-python's real client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import stripe

import opskit
from opskit.backend.db import create_reference_tables
from opskit.common.exceptions import InputError, UnknownSubscription
from opskit.ops import Ops
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

TRIAL = {"trial_period_days": 7}  # no payment method needed
LIVE_SAYS = "a similar object exists in live mode, but a test mode key was used"


@dataclass
class World:
    ops: Ops
    sandbox: Sandbox
    key: str
    cus: dict[str, str]

    def posts(self, path: str) -> int:
        return sum(
            1 for r in self.sandbox.requests(self.key) if r.method == "POST" and r.path == path
        )

    def details(self, account_id: int) -> dict[str, Any]:
        acc = self.ops.accounts()
        raw = acc.loc[acc["account_id"].astype("string") == str(account_id), "details"].iloc[0]
        return json.loads(raw) if raw else {}

    def subs(self, customer: str) -> list[dict[str, Any]]:
        client = stripe.StripeClient(self.key, base_addresses={"api": self.sandbox.url})
        page = client.v1.subscriptions.list(params={"customer": customer, "status": "all"})
        return [s.to_dict() for s in page.data]


def _database(tmp_path: Path, key: str, accounts: list[dict[str, Any]]) -> str:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    insert(
        url,
        shops=[{"id": 1, "name": "One", "stripe_secret_key": key}],
        accounts=[{"shop_id": 1, "email": f"a{a['id']}@x.io", **a} for a in accounts],
    )
    return url


@pytest.fixture
def world(sandbox: Sandbox, tmp_path: Path) -> Iterator[World]:
    key = make_key("state")
    names = ["two_subs", "paused", "ended", "trial", "fresh"]
    cus = dict(
        zip(names, sandbox.seed(key, "customers", [{"email": f"{n}@x.io"} for n in names]),
            strict=True)
    )  # fmt: skip
    (cus["live"],) = sandbox.seed_other_mode(key, "customers", [{"email": "live@x.io"}])
    (cus["live_sub_owner"],) = sandbox.seed_other_mode(key, "customers", [{"email": "o@x.io"}])
    sandbox.seed(key, "prices", [{"id": "price_base", "unit_amount": 900, "currency": "eur",
                                  "recurring": {"interval": "month"}}])  # fmt: skip
    monthly = {"unit_amount": 900, "currency": "eur", "recurring": {"interval": "month"}}
    sandbox.seed_other_mode(key, "prices", [{"id": "price_live", **monthly}])
    subs = sandbox.seed(
        key,
        "subscriptions",
        [
            {"customer": cus["two_subs"], "price": "price_base", "status": "canceled"},
            {"customer": cus["two_subs"], "price": "price_base"},  # active, recorded nowhere
            {"customer": cus["paused"], "price": "price_base", "status": "paused"},
            {"customer": cus["ended"], "price": "price_base", "status": "canceled"},
            {"customer": cus["ended"], "price": "price_base", "status": "incomplete_expired"},
            {"customer": cus["trial"], "price": "price_base", "status": "trialing"},
        ],
    )
    (live_sub,) = sandbox.seed_other_mode(
        key, "subscriptions", [{"customer": cus["live_sub_owner"], "price": "price_live"}]
    )
    cus["canceled_sub"], cus["live_sub"] = subs[0], live_sub

    def rec(cid: str, **more: Any) -> dict[str, Any]:
        return {"stripe_customer_id": cid, **more}

    url = _database(
        tmp_path,
        key,
        [
            # records the canceled subscription; the active one is recorded nowhere
            {
                "id": 1,
                "details": rec(
                    cus["two_subs"], stripe_subscription_id=subs[0], subscription_status="canceled"
                ),
            },  # fmt: skip
            {"id": 2, "details": rec(cus["paused"])},
            {"id": 3, "details": rec(cus["ended"])},
            {"id": 4, "details": rec(cus["trial"])},
            {"id": 5, "details": rec(cus["fresh"])},
            {"id": 10, "details": rec(cus["live"], plan_note="vip")},  # a live-mode customer
            {"id": 11, "details": rec("cus_NoSuchThing")},  # really absent
        ],
    )
    ops = opskit.connect(url, stripe_api_base=sandbox.url)
    yield World(ops, sandbox, key, cus)
    ops.ctx.db.engine.dispose()


def _set_details(world: World, account_id: int, details: dict[str, Any]) -> None:
    t = world.ops.ctx.db.accounts_table
    value: Any = details if isinstance(t.c.details.type, sa.JSON) else json.dumps(details)
    with world.ops.ctx.db.engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == account_id).values(details=value))


# -- the double-billing guard asks Stripe ------------------------------------------------------


def test_a_live_subscription_recorded_nowhere_blocks_a_second_one(world: World) -> None:
    before = world.posts("/v1/subscriptions")
    with pytest.raises(InputError, match="already has 1 live subscription") as info:
        world.ops.create_subscription(1, "price_base", actor="test", **TRIAL)
    assert "(active)" in info.value.message
    assert world.posts("/v1/subscriptions") == before  # nothing created: no double billing
    assert len([s for s in world.subs(world.cus["two_subs"]) if s["status"] == "active"]) == 1
    log = world.ops.audit_log()
    assert (log["action"].iloc[0], log["outcome"].iloc[0]) == ("subscription.create", "refused")
    # force is the explicit way through
    forced = world.ops.create_subscription(1, "price_base", actor="test", force=True, **TRIAL)
    assert (
        forced["status"] == "trialing"
        and world.details(1)["stripe_subscription_id"] == forced["id"]
    )


@pytest.mark.parametrize(("account_id", "blocked"), [(2, "paused"), (4, "trialing")])
def test_every_live_status_blocks(world: World, account_id: int, blocked: str) -> None:
    with pytest.raises(InputError, match=rf"\({blocked}\)"):
        world.ops.create_subscription(account_id, "price_base", actor="test", **TRIAL)


def test_ended_subscriptions_do_not_block_and_a_repeat_is_a_noop(world: World) -> None:
    sub = world.ops.create_subscription(3, "price_base", actor="test", **TRIAL)
    assert sub["status"] == "trialing"
    again = world.ops.create_subscription(3, "price_base", actor="test", **TRIAL)
    assert again["id"] == sub["id"]  # the very same call: returned, not refused, not doubled
    assert len([s for s in world.subs(world.cus["ended"]) if s["status"] == "trialing"]) == 1
    # the local step lost (a crash after Stripe answered): the same call records it now
    _set_details(world, 3, {"stripe_customer_id": world.cus["ended"]})
    posts = world.posts("/v1/subscriptions")
    third = world.ops.create_subscription(3, "price_base", actor="test", **TRIAL)
    assert third["id"] == sub["id"] and world.posts("/v1/subscriptions") == posts
    assert world.details(3)["stripe_subscription_id"] == sub["id"]
    fresh = world.ops.create_subscription(5, "price_base", actor="test", **TRIAL)
    assert fresh["customer"] == world.cus["fresh"]


# -- a 404 that says "other mode" is not absence ----------------------------------------------


def test_a_link_to_the_other_mode_is_mode_mismatch_with_stripes_message(world: World) -> None:
    reports = world.ops.reconcile(progress=False)
    report = reports["customers"]
    by_account = {str(a): r for a, (_, r) in zip(report["account_id"], report.iterrows(),
                                                  strict=True)}  # fmt: skip
    row = by_account["10"]
    assert row["status"] == "mode_mismatch"
    assert LIVE_SAYS in row["detail"] and world.cus["live"] in row["detail"]
    assert "create a new customer" not in row["suggested_action"]
    assert row["suggested_action"].startswith("keep the link")
    assert by_account["11"]["status"] == "missing_in_stripe"  # a plain 404 stays missing
    plan = world.ops.sync_plan(reports=reports)
    assert "10" not in set(plan["account_id"].astype(str))


def test_create_customer_never_replaces_a_link_to_the_other_mode(world: World) -> None:
    before = world.posts("/v1/customers")
    for force in (False, True):
        with pytest.raises(InputError, match="exists in live mode") as info:
            world.ops.create_customer(10, actor="test", force=force)
        assert LIVE_SAYS in info.value.message
    assert world.posts("/v1/customers") == before
    assert world.details(10) == {"stripe_customer_id": world.cus["live"], "plan_note": "vip"}
    log = world.ops.audit_log()
    assert list(log["outcome"][:2]) == ["refused", "refused"]
    assert LIVE_SAYS in log["error"].iloc[0]
    # a really absent customer is still replaced (the dangling-link repair)
    made = world.ops.create_customer(11, actor="test")
    assert world.details(11)["stripe_customer_id"] == made["id"]


def test_cancel_of_an_other_mode_subscription_says_where_it_is(world: World) -> None:
    with pytest.raises(UnknownSubscription, match="exists only in live mode") as info:
        world.ops.cancel_subscription(world.cus["live_sub"], shop_id=1, actor="test")
    assert LIVE_SAYS in info.value.message


def test_the_reverse_a_live_key_and_a_test_mode_customer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSKIT_ALLOW_LIVE_KEYS_ELSEWHERE", "1")  # a live key to the sandbox
    live = "sk_live_" + make_key("rev").removeprefix("sk_test_")
    with Sandbox(keys=[live]) as sb:
        (cid,) = sb.seed_other_mode(live, "customers", [{"email": "t@x.io"}])
        url = _database(tmp_path, live, [{"id": 1, "details": {"stripe_customer_id": cid}}])
        ops = opskit.connect(url, stripe_api_base=sb.url)
        try:
            row = ops.reconcile_customers(progress=False).iloc[0]
        finally:
            ops.ctx.db.engine.dispose()
    assert row["status"] == "mode_mismatch"
    assert "a similar object exists in test mode, but a live mode key was used" in row["detail"]
