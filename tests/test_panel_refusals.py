"""The payment panel refuses before it offers: a currency Stripe does not take, details it
cannot read, and a same-email customer that should be linked rather than duplicated.

Driven without a kernel (set ``.value``, call ``button.click()``) on the demo world.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from opskit import demo
from opskit.common.exceptions import InvalidAmount
from opskit.core.money import validate_amount
from opskit.core.money_entry import describe_entry, parse_amount
from opskit.demo import DemoSession

widgets = pytest.importorskip("opskit.faces.widgets")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSession]:
    path = tmp_path_factory.mktemp("refusals") / "demo.sqlite"
    with demo.start(url=f"sqlite:///{path}", shape="reference") as s:
        yield s


def _linked(session: DemoSession, shop_id: str) -> list[Any]:
    accounts = session.ops.accounts([shop_id])
    return list(accounts.loc[accounts["stripe_customer_id"].notna(), "account_id"])


# -- 1: a currency Stripe does not charge in is refused in the preview -------------------------


@pytest.mark.parametrize("code", ["cup", "irr", "kpw", "syp", "xyz"])
def test_unsupported_currency_is_refused_with_guidance_not_previewed(code: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount("19.99", code)
    assert "minor units" not in info.value.message
    assert "usd" in info.value.guidance and "Currency" not in info.value.message
    with pytest.raises(InvalidAmount):
        describe_entry("19.99", code)
    with pytest.raises(InvalidAmount):  # the write path refuses it too, before any request
        validate_amount(1999, code)
    assert describe_entry("19.99", "usd") == "USD 19.99 = 1999 minor units"


def test_payment_panel_keeps_create_disabled_for_an_unsupported_currency(
    session: DemoSession,
) -> None:
    panel = widgets.payment_panel(session.ops, actor="refusals")
    panel.shop.value = "1"
    panel.account.value = _linked(session, "1")[0]
    assert panel.create_button.disabled  # nothing typed yet
    panel.amount.value = "19.99"
    assert not panel.create_button.disabled and "opskit-amount-ok" in panel.amount_preview.value
    for code in ("cup", "CUP", "kpw", "xyz"):
        panel.currency.value = code
        shown = panel.amount_preview.value
        assert "opskit-amount-error" in shown and "minor units" not in shown, shown
        assert "e.g. usd" in shown  # what to type instead, in the field's terms
        assert "Pass integer" not in shown  # never Python's terms
        assert panel.create_button.disabled
        before = session.sandbox.request_count() if session.sandbox else 0
        panel.create_button.click()  # even a click that gets through asks nothing
        assert not panel.confirm.pending and panel.message.kind == "error"
        assert (session.sandbox.request_count() if session.sandbox else 0) == before
    panel.currency.value = "usd"
    assert not panel.create_button.disabled


# -- 2: unreadable details: no create offer, a reason and a fix, before any question ----------


def _set_details(session: DemoSession, account_id: Any, raw: str) -> None:
    db = session.ops.ctx.db
    t = db.accounts_table
    value: Any = json.loads(raw) if isinstance(t.c.details.type, sa.JSON) else raw
    with db.engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == int(account_id)).values(details=value))


def _unlinked(session: DemoSession, shop_id: str) -> pd.DataFrame:
    a = session.ops.accounts([shop_id])
    return a[a["stripe_customer_id"].isna() & a["details_error"].isna()]


@pytest.mark.parametrize(
    "raw",
    ['{"stripe_customer_id": "cus_', "[1, 2, 3]", '"text"', '{"stripe_customer_id": 123}'],
    ids=["invalid-json", "list", "string", "non-text-id"],
)
def test_unreadable_details_are_refused_before_any_offer(session: DemoSession, raw: str) -> None:
    account_id = _unlinked(session, "2").iloc[0]["account_id"]
    _set_details(session, account_id, raw)
    try:
        panel = widgets.payment_panel(session.ops, actor="refusals")
        panel.shop.value = "2"
        panel.account.value = account_id
        assert panel.customer_button.layout.display == "none"  # no create offer
        assert panel.message.kind == "warning"
        text = panel.message.text
        assert "cannot be read" in text and "JSON object" in text, text
        assert "Press Create Stripe customer" not in text
        for python in ("ops.", "()", "force="):
            assert python not in text
        # A click that still gets through asks nothing and writes nothing.
        before = session.sandbox.request_count() if session.sandbox else 0
        panel.customer_button.click()
        assert not panel.confirm.pending and "cannot be read" in panel.message.text
        panel.amount.value = "5.00"
        panel.create_button.click()
        assert not panel.confirm.pending and "cannot be read" in panel.message.text
        assert (session.sandbox.request_count() if session.sandbox else 0) == before
    finally:
        _set_details(session, account_id, "{}")


def test_a_non_text_stripe_id_is_unreadable_details_on_every_loader(db_url: str) -> None:
    """The accounts frame flags it (SQLite's fast path, PostgreSQL's in-database
    extraction), so no face reads ``123`` as a link."""
    import opskit
    from tests.dbutil import insert

    insert(db_url, shops=[{"id": 1, "name": "One", "stripe_secret_key": None}])
    insert(
        db_url,
        accounts=[
            {"id": 1, "shop_id": 1, "email": "a@x.io", "details": {"stripe_customer_id": 123}},
            {"id": 2, "shop_id": 1, "email": "b@x.io",
             "details": {"stripe_customer_id": "cus_ok", "stripe_price_id": ["p"]}},
            {"id": 3, "shop_id": 1, "email": "c@x.io", "details": {"stripe_customer_id": "cus_3"}},
            {"id": 4, "shop_id": 1, "email": "d@x.io", "details": {"stripe_customer_id": None}},
        ],
    )  # fmt: skip
    ops = opskit.connect(db_url)
    try:
        a = ops.accounts().set_index("account_id")
    finally:
        ops.ctx.db.engine.dispose()
    assert "not a Stripe id" in a.loc["1", "details_error"]
    assert pd.isna(a.loc["1", "stripe_customer_id"])
    assert "stripe_price_id" in a.loc["2", "details_error"]
    assert pd.isna(a.loc["2", "stripe_customer_id"])
    assert a.loc["3", "stripe_customer_id"] == "cus_3" and pd.isna(a.loc["3", "details_error"])
    assert pd.isna(a.loc["4", "details_error"])


# -- 3: a same-email customer is linked, not duplicated ----------------------------------------


def test_panel_offers_to_link_the_same_email_customer_first(session: DemoSession) -> None:
    assert session.sandbox is not None
    row = _unlinked(session, "1").iloc[-1]
    account_id, email = row["account_id"], str(row["email"])
    key = session.ops.ctx.db.shop("1").stripe_secret_key
    assert key is not None
    seeded = session.sandbox.seed(key, "customers", [{"email": email.lower()}])[0]
    offered = [c["id"] for c in session.ops.same_email_customers(account_id)]
    assert seeded in offered
    panel = widgets.payment_panel(session.ops, actor="refusals")
    panel.shop.value = "1"
    panel.account.value = account_id
    assert panel.link_button.layout.display != "none"
    assert panel.link_button.description == f"Link {offered[0]} (same email)"
    assert panel.link_button.button_style == "primary"
    assert panel.customer_button.description == "Create new customer anyway…"
    assert seeded in panel.message.text and "no account links it" in panel.message.text
    for python in ("ops.", "()", "allow_duplicate"):
        assert python not in panel.message.text
    creates = sum(1 for r in session.sandbox.requests(key) if r.method == "POST"
                  and r.path == "/v1/customers")  # fmt: skip
    panel.link_button.click()
    assert panel.confirm.confirm_button.description == "Link customer"
    assert panel.confirm.cancel_button.description == "Don't link"
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success" and offered[0] in panel.message.text
    linked = session.ops.accounts(["1"]).set_index("account_id").loc[account_id]
    assert linked["stripe_customer_id"] == offered[0]
    assert panel.link_button.layout.display == "none"
    assert panel.customer_button.layout.display == "none"
    after = sum(1 for r in session.sandbox.requests(key) if r.method == "POST"
                and r.path == "/v1/customers")  # fmt: skip
    assert after == creates  # nothing created in Stripe
    row = session.ops.audit_log(action="customer.link").iloc[0]
    assert (row["outcome"], row["result"], row["actor"]) == ("ok", offered[0], "refusals")


def test_a_refused_link_refreshes_the_offer_and_speaks_panel(session: DemoSession) -> None:
    """Another account linked the offered customer meanwhile: the click is refused, the
    panel offers the next free same-email customer, and says so without Python advice."""
    assert session.sandbox is not None
    unlinked = _unlinked(session, "1")
    account_id, email = unlinked.iloc[0]["account_id"], str(unlinked.iloc[0]["email"])
    other = unlinked.iloc[1]["account_id"]
    key = session.ops.ctx.db.shop("1").stripe_secret_key
    assert key is not None
    session.sandbox.seed(key, "customers", [{"email": email.lower()}] * 2)
    before = [str(c["id"]) for c in session.ops.same_email_customers(account_id)]
    assert len(before) >= 2
    panel = widgets.payment_panel(session.ops, actor="refusals")
    panel.shop.value = "1"
    panel.account.value = account_id
    assert panel.link_button.description == f"Link {before[0]} (same email)"
    session.ops.link_customer(other, before[0], actor="elsewhere", force=True)  # meanwhile
    panel.link_button.click()
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "error" and "already linked by account" in panel.message.text
    for python in ("force=True", "ops.", "()", "pass "):
        assert python not in panel.message.text
    assert panel.link_button.layout.display != "none"
    assert panel.link_button.description == f"Link {before[1]} (same email)"
    assert f"press Link {before[1]}" in panel.message.text
    assert (
        session.ops.accounts(["1"]).set_index("account_id").loc[account_id]["stripe_customer_id"]
        is pd.NA
    )
