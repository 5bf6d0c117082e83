"""Every refusal of every write action is an audit row, with no Stripe request sent; every
idempotent write that returns an earlier result marks it (``replayed=True``, audited
``already_done``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from opskit.backend.db import create_reference_tables
from opskit.common.exceptions import (
    InputError,
    InvalidAmount,
    OpskitError,
    StripeCustomerMissing,
    UnknownAccount,
)
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from opskit.writes import actions, link
from tests.conftest import fresh_sqlite_url
from tests.faults.world import World, make_world


@pytest.fixture
def world(tmp_path: Path, sandbox: Sandbox) -> Iterator[World]:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    yield make_world(url, sandbox)


Call = Callable[[World], Any]
REFUSALS: dict[str, tuple[Call, type[OpskitError], str, str]] = {
    # name: (call, error, action, target)
    "float amount": (
        lambda w: actions.create_payment_intent(w.ctx, 10, 1999.0, "eur", actor="ann"),
        InvalidAmount, "payment_intent.create", "account:10",
    ),
    "no customer": (
        lambda w: actions.create_payment_intent(w.ctx, 11, 1999, "eur", actor="ann"),
        StripeCustomerMissing, "payment_intent.create", "account:11",
    ),
    "unknown account": (
        lambda w: actions.create_payment_intent(w.ctx, 999, 1999, "eur", actor="ann"),
        UnknownAccount, "payment_intent.create", "account:999",
    ),
    "subscription, no customer": (
        lambda w: actions.create_subscription(w.ctx, 11, "price_x", actor="ann"),
        StripeCustomerMissing, "subscription.create", "account:11",
    ),
    "subscription, blank price": (
        lambda w: actions.create_subscription(w.ctx, 10, " ", actor="ann"),
        InputError, "subscription.create", "account:10",
    ),
    "cancel, blank id": (
        lambda w: actions.cancel_subscription(w.ctx, " ", shop_id=1, actor="ann"),
        InputError, "subscription.cancel", "subscription: ",
    ),
    "customer, unknown account": (
        lambda w: actions.create_customer(w.ctx, 998, actor="ann"),
        UnknownAccount, "customer.create", "account:998",
    ),
    "link, not a customer id": (
        lambda w: link.link_customer(w.ctx, 12, "x_1", actor="ann"),
        InputError, "customer.link", "account:12",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REFUSALS))
def test_every_refusal_is_audited_and_nothing_is_sent(world: World, name: str) -> None:
    call, error, action, target = REFUSALS[name]
    world.link(10)
    before, posts = len(world.log()), world.posts()
    with pytest.raises(error) as info:
        call(world)
    log = world.log()
    assert len(log) == before + 1, log
    row = log.iloc[0]  # newest first
    assert (row["outcome"], row["action"], row["target"]) == ("refused", action, target)
    assert row["actor"] == "ann" and row["error"] == info.value.message
    if target.startswith("account:1") and name != "unknown account":
        assert row["shop_id"] == "1"
    assert world.posts() == posts  # no Stripe write was sent


def test_a_refusal_the_write_audited_itself_is_one_row(world: World) -> None:
    t = world.ctx.db.accounts_table
    with world.ctx.db.engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == 13).values(email=None))
    before = len(world.log())
    with pytest.raises(InputError, match="no email"):
        actions.create_customer(world.ctx, 13, actor="ann")
    assert len(world.log()) == before + 1


def test_a_refusal_names_the_same_actor_as_a_sent_write(world: World) -> None:
    """No actor given: the refused row and the sent row say the same default actor."""
    world.link(10)
    with pytest.raises(InvalidAmount):
        actions.create_payment_intent(world.ctx, 10, -5, "eur")
    actions.create_payment_intent(world.ctx, 10, 1999, "eur")
    rows = world.log(action="payment_intent.create")
    assert list(rows["outcome"]) == ["ok", "refused"]
    assert rows["actor"].nunique() == 1 and rows["actor"].iloc[0] == "opskit"


def _params(row: Any) -> dict[str, Any]:
    return json.loads(row["params"]) if isinstance(row["params"], str) else {}


def test_a_replayed_payment_intent_is_marked(world: World) -> None:
    world.link(10)
    first = actions.create_payment_intent(world.ctx, 10, 1999, "eur", actor="ann")
    again = actions.create_payment_intent(world.ctx, 10, 1999, "eur", actor="ann")
    assert "replayed" not in first and again["replayed"] is True
    assert again["id"] == first["id"]
    rows = world.log(action="payment_intent.create")
    newest = rows.iloc[0]
    assert newest["outcome"] == "ok" and _params(newest).get("already_done") is True
    assert "replayed" in str(newest.get("resolution"))
    assert _params(rows.iloc[1]).get("already_done") is None  # the first was a new write
    shown = CliRunner().invoke(
        app, ["audit", "--database-url", world.url, "--action", "payment_intent.*"],
        env={"COLUMNS": "250"},
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.count("ok (already done)") == 1, shown.stdout


def test_every_write_that_returns_an_earlier_result_marks_it(world: World) -> None:
    made = actions.create_customer(world.ctx, 14, actor="ann")
    assert "replayed" not in made
    assert actions.create_customer(world.ctx, 14, actor="ann")["replayed"] is True
    assert link.link_customer(world.ctx, 14, made["id"], actor="ann")["replayed"] is True
    price = world.price()
    sub = actions.create_subscription(world.ctx, 14, price, actor="ann", trial_period_days=7)
    assert "replayed" not in sub
    again_sub = actions.create_subscription(world.ctx, 14, price, actor="ann", trial_period_days=7)
    assert again_sub["replayed"] is True
    done = actions.cancel_subscription(world.ctx, sub["id"], shop_id=1, actor="ann")
    assert "replayed" not in done
    again = actions.cancel_subscription(world.ctx, sub["id"], shop_id=1, actor="ann")
    assert again["replayed"] is True
    for action in ("customer.create", "customer.link", "subscription.create",
                   "subscription.cancel"):  # fmt: skip
        assert _params(world.log(action=action).iloc[0]).get("already_done") is True, action
