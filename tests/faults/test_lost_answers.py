"""Writes whose answer is lost (issue 12 part 6): found out in Stripe, never blindly retried.

The sandbox saves a write's result once it starts executing, a 500 included, and
replays it for the same idempotency key, as Stripe does; ``inject_write_fault``
makes the next write fail after executing (``error_after``: the object exists),
before writing (``error_before``: a saved 500, nothing exists) or lose its answer
(``drop_after``). Each run: exactly one object (or none), the caller gets it, and
the audit log says what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opskit.sandbox import Sandbox
from opskit.writes import actions
from tests.faults.conftest import Tally
from tests.faults.world import World, make_world

KINDS = ("error_after", "error_before", "drop_after")


@pytest.fixture
def w(db_url: str, sandbox: Sandbox) -> Iterator[World]:
    world = make_world(db_url, sandbox)
    yield world
    sandbox.reset_config()
    world.ctx.db.engine.dispose()


def _writes(w: World) -> dict[str, tuple[str, Callable[[], dict[str, Any]], Callable[[], int]]]:
    """action -> (path, the write, how many objects it made in Stripe)."""
    cid = w.link(11)
    w.link(12)
    price = w.price()
    sub = w.stripe().v1.subscriptions.create(
        params={"customer": w.link(13), "items": [{"price": price}], "trial_period_days": 3}
    )
    c = w.stripe()

    def n_customers() -> int:
        return sum(1 for x in w.customers() if (x.get("metadata") or {}).get("opskit_account_id"))

    def n_intents() -> int:
        return len(c.v1.payment_intents.list(params={"customer": cid}).data)

    def n_subs() -> int:
        cus12 = w.details(12)["stripe_customer_id"]
        return len(c.v1.subscriptions.list(params={"customer": cus12, "status": "all"}).data)

    def n_canceled() -> int:
        return int(bool(c.v1.subscriptions.retrieve(sub.id).cancel_at_period_end))

    return {
        "customer.create": (
            "/v1/customers", lambda: actions.create_customer(w.ctx, 10, actor="t"), n_customers
        ),
        "payment_intent.create": (
            "/v1/payment_intents",
            lambda: actions.create_payment_intent(w.ctx, 11, 1200, "eur", actor="t"),
            n_intents,
        ),
        "subscription.create": (
            "/v1/subscriptions",
            lambda: actions.create_subscription(w.ctx, 12, price, actor="t", trial_period_days=3),
            n_subs,
        ),
        "subscription.cancel": (
            f"/v1/subscriptions/{sub.id}",
            lambda: actions.cancel_subscription(  # a POST (an immediate cancel is a DELETE)
                w.ctx, sub.id, shop_id=1, at_period_end=True, actor="t"
            ),
            n_canceled,
        ),
    }  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_every_write_kind_finds_out_what_a_lost_answer_did(
    w: World, kind: str, tally: Tally
) -> None:
    writes = _writes(w)

    def scenario(action: str) -> tuple[str, str]:
        path, write, made = writes[action]
        w.sandbox.inject_write_fault(w.key, kind)
        obj = write()
        rows = w.log(action=action)
        mine = rows[rows["outcome"].isin(["ok", "error", "pending", "unknown"])]
        if made() != 1:
            return "wrong", f"{made()} objects in Stripe after {kind}"
        if mine["outcome"].isin(["pending", "unknown"]).any():
            return "wrong", "an intent was left open"
        last = mine.iloc[0]
        if last["outcome"] != "ok" or last["result"] != obj["id"]:
            return "wrong", f"audit says {last['outcome']} {last['result']}, Stripe {obj['id']}"
        if kind == "error_before":  # the saved 500 was not replayed forever: a new key
            if not str(last["idempotency_key"]).endswith(":attempt2"):
                return "wrong", f"sent again under {last['idempotency_key']}"
            if "not in Stripe" not in str(mine.iloc[1]["resolution"]):
                return "wrong", "the first attempt's lookup is not recorded"
        elif "found" not in str(last["resolution"]):
            return "wrong", f"no lookup recorded: {mine.to_dict('records')}"
        # The same call again (a re-run cell): the same object, nothing new.
        again = write()
        if again["id"] != obj["id"] or made() != 1:
            return "wrong", "a re-run made another object"
        return "right", f"{kind}: {last['resolution']}"

    verdicts = {a: tally.run(f"{kind} {a}", lambda a=a: scenario(a)) for a in writes}
    assert set(verdicts.values()) == {"right"}, verdicts
